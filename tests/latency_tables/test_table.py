"""The table format: entries, partitions, rows, and file round-trips (JSON, YAML, CSV)."""

from __future__ import annotations

import json

import pytest

import latency_tables as lt

K1 = "Conv-input:16x16x3-output:16x16x16"
K2 = "Logits-input:1x1x256-output:10"
K3 = "nor_conv_3x3-input:32x32x16-output:32x32x16"


def make_table() -> lt.LatencyTable:
    t = lt.LatencyTable(
        "local-cpu", {"source": "measured", "spaces": ["mbv3_tiny"], "protocol": {"rounds": 2}}
    )
    t.set(K1, lt.Entry(0.1234567890123, 0.01, 200, 0.12, 0.15))
    t.set(K2, lt.Entry(0.02, 0.001, 200, 0.019, 0.025))
    t.set(K2, lt.Entry(0.03, 0.0, None, None, None), resolution=160)  # a per-resolution override
    t.set(K3, lt.Entry(1.5))
    t.overhead["mbv3_tiny"] = lt.OverheadModel(1.05, 0.004, 0.02, 40, 0.01, 10_000)
    return t


def test_lookup_prefers_the_resolution_partition() -> None:
    t = make_table()
    assert t.get(K2).mean == 0.02 and t.get(K2, 160).mean == 0.03 and t.get(K2, 224).mean == 0.02
    assert t.get(K1, 160).mean == pytest.approx(0.1234567890123)
    assert (
        t.get(" first_conv-output:16x16x16-input:16x16x3").mean == t.get(K1).mean
    )  # canonicalised on lookup
    assert len(t) == 4 and K3 in t and "nope" not in t
    assert t.resolutions == [None, 160] and t.keys(160) == [K2]
    with pytest.raises(
        KeyError, match="No entry for op key 'nb201_add-input:2x2x2'.*'local-cpu'.*resolution 160"
    ):
        t.get("nb201_add-input:2x2x2", 160)


def test_rows_round_trip() -> None:
    t = make_table()
    rows = t.to_rows()
    assert {r["device"] for r in rows} == {"local-cpu"} and len(rows) == 4
    assert set(rows[0]) == {"device", "resolution", "key", "count", "mean", "std", "p50", "p90", "min"}
    back = lt.LatencyTable.from_rows(rows, meta=t.meta, overhead=t.overhead)
    assert back == t


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_full_file_round_trip(tmp_path, suffix: str) -> None:
    t = make_table()
    path = t.save(tmp_path / f"table{suffix}")
    back = lt.LatencyTable.load(path)
    assert back == t and back.overhead["mbv3_tiny"].b == 0.004
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left


def test_csv_round_trip_keeps_entries(tmp_path) -> None:
    t = make_table()
    path = t.save(tmp_path / "table.csv")
    assert path.read_text().splitlines()[0] == "key,mean,std,count,p50,p90,min,resolution"
    back = lt.LatencyTable.load(path, "local-cpu")
    assert back.to_rows() == t.to_rows()
    with pytest.raises(ValueError, match="carries no device"):
        lt.LatencyTable.load(path)


@pytest.mark.parametrize(
    "entry, match",
    [
        (lt.Entry(-1.0), "`mean` must be a finite number >= 0"),
        (lt.Entry(float("nan")), "`mean`"),
        (lt.Entry(1.0, float("inf")), "`std`"),
        (lt.Entry(1.0, 0.0, -3), "`count` must be an integer >= 0"),
        (lt.Entry(1.0, 0.0, 3, "fast"), "`p50`"),  # type: ignore[arg-type]
    ],
)
def test_bad_entries_name_the_key(entry: lt.Entry, match: str) -> None:
    with pytest.raises(ValueError, match=f"{K1}.*{match}"):
        lt.LatencyTable("local-cpu").set(K1, entry)


def test_bad_rows() -> None:
    rows = make_table().to_rows()
    with pytest.raises(ValueError, match="duplicate entry for op key"):
        lt.LatencyTable.from_rows(rows + rows[:1])
    with pytest.raises(ValueError, match="2 devices"):
        lt.LatencyTable.from_rows(rows + [{**rows[0], "device": "other", "key": K3}])
    with pytest.raises(ValueError, match="name device"):
        lt.LatencyTable.from_rows(rows, device="other")
    with pytest.raises(ValueError, match="row 0: missing `mean`"):
        lt.LatencyTable.from_rows([{"device": "d", "key": K1}])
    with pytest.raises(ValueError, match="row 0: resolution must be a positive integer"):
        lt.LatencyTable.from_rows([{"device": "d", "key": K1, "mean": 1.0, "resolution": "big"}])
    with pytest.raises(ValueError, match="Unknown op 'Bogus'"):
        lt.LatencyTable.from_rows([{"device": "d", "key": "Bogus-input:1x1x1", "mean": 1.0}])


def test_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="No latency table file"):
        lt.LatencyTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "format": "hwnas-latency-table/1",\n  "device": \n}\n')
    with pytest.raises(ValueError, match=r"bad.json: line 4: invalid JSON"):
        lt.LatencyTable.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a latency table"):
        lt.LatencyTable.load(bad)
    bad.write_text(json.dumps({"format": "hwnas-latency-table/1", "device": "d"}))
    with pytest.raises(ValueError, match="missing field 'entries'"):
        lt.LatencyTable.load(bad)
    bad.write_text(json.dumps({"format": "hwnas-latency-table/1", "device": "d", "entries": [{"key": K1}]}))
    with pytest.raises(ValueError, match="missing `mean`"):
        lt.LatencyTable.load(bad)
    bad.write_text(
        json.dumps(
            {"format": "hwnas-latency-table/1", "device": "d", "entries": [], "overhead": {"s": {"a": 1}}}
        )
    )
    with pytest.raises(ValueError, match="Bad overhead model"):
        lt.LatencyTable.load(bad)
    ymal = tmp_path / "bad.yaml"
    ymal.write_text("format: x\n  entries: [\n")
    with pytest.raises(ValueError, match="bad.yaml: line 2: invalid YAML"):
        lt.LatencyTable.load(ymal)
    good = make_table().save(tmp_path / "t.json")
    with pytest.raises(ValueError, match="for device 'local-cpu', not 'other'"):
        lt.LatencyTable.load(good, "other")
    with pytest.raises(ValueError, match="Unknown table file type '.txt'"):
        make_table().save(tmp_path / "t.txt")
    with pytest.raises(ValueError, match="Unknown table file type"):
        lt.LatencyTable.load(good.rename(tmp_path / "t.txt"))
