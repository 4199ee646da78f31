"""Importers: Once-for-All's Note10 YAML tables (acceptance 1) and plain CSV, with every error."""

from __future__ import annotations

import pytest
import yaml

import latency_tables as lt
import search_spaces as ss
from tests.latency_tables.conftest import OFA_LUT


def ofa_note10_sum(spec: dict, lut: dict) -> float:
    """Once-for-All's `predict_network_latency_given_spec` for the w1.2 space, written out
    independently of this package: the keys are spelled here, the YAML is read with PyYAML."""
    r = spec["r"][0]

    def q(kind, i, o, mid=None, ks=None, stride=None, idskip=None, se=None, hs=None):
        key = f"{kind}-input:{'x'.join(map(str, i))}-output:{'x'.join(map(str, o))}"
        if kind == "expanded_conv":
            key += f"-expand:{mid}-kernel:{ks}-stride:{stride}-idskip:{idskip}-se:{se}-hs:{hs}"
        return lut[key]["mean"]

    total = q("Conv", [r, r, 3], [(r + 1) // 2, (r + 1) // 2, 24])
    fsize = (r + 1) // 2
    total += q("expanded_conv", [fsize, fsize, 24], [fsize, fsize, 24], 24, 3, 1, 1, 0, 0)
    cin, strides, widths = 24, [2, 2, 2, 1, 2], [32, 48, 96, 136, 192]
    acts, ses = ["relu", "relu", "h_swish", "h_swish", "h_swish"], [0, 1, 0, 1, 1]
    for i in range(20):
        stage, depth = i // 4, i % 4 + 1
        if depth > spec["d"][stage]:
            continue
        stride, idskip = (strides[stage], 0) if i % 4 == 0 else (1, 1)
        out = int((fsize - 1) / stride + 1)
        total += q(
            "expanded_conv",
            [fsize, fsize, cin],
            [out, out, widths[stage]],
            round(cin * spec["e"][i]),
            spec["ks"][i],
            stride,
            idskip,
            ses[stage],
            int(acts[stage] == "h_swish"),
        )
        fsize, cin = out, widths[stage]
    total += q("Conv_1", [fsize, fsize, 192], [fsize, fsize, 1152])
    total += q("AvgPool2D", [fsize, fsize, 1152], [1, 1, 1152])
    total += q("Conv_2", [1, 1, 1152], [1, 1, 1536])
    total += q("Logits", [1, 1, 1536], [1000])
    return total


@pytest.mark.parametrize("end", ["smallest", "largest"])
@pytest.mark.parametrize("r", [160, 224])
def test_note10_estimate_equals_the_yaml_sum(note10_table, end: str, r: int) -> None:
    space = ss.get_space("ofa_mbv3_w12")
    arch = {**getattr(space, end)(), "r": r}
    with open(OFA_LUT / f"{r}_lookup_table.yaml") as fh:
        lut = yaml.safe_load(fh)
    expected = ofa_note10_sum(space.to_ofa(arch), lut)
    assert lt.estimate(note10_table, space, arch, overhead=False) == pytest.approx(expected, rel=1e-12, abs=0)
    assert lt.estimate(note10_table, space, arch) == pytest.approx(expected, rel=1e-12)  # no overhead model
    assert 5 < expected < 150  # milliseconds on a phone CPU


def test_note10_import_is_complete(note10_table) -> None:
    space = ss.get_space("ofa_mbv3_w12")
    assert note10_table.device == "note10" and len(note10_table) == 17 * 96
    assert note10_table.resolutions == list(range(160, 225, 4))
    for r in note10_table.resolutions:
        assert note10_table.keys(r) == lt.all_keys(space, [r])
    e = note10_table.get("Logits-input:1x1x1536-output:1000", 224)
    assert e.count == 500 and e.mean == pytest.approx(0.669412) and e.p50 is None
    assert (
        note10_table.meta["source"] == "once-for-all yaml"
        and note10_table.meta["device"]["kind"] == "mobile-cpu"
    )
    # one file, resolution from its name
    single = lt.import_ofa_yaml(OFA_LUT / "192_lookup_table.yaml")
    assert single.resolutions == [192] and len(single) == 96


def _write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "Conv-input:160x160x3-output:80x80x24:\n  count: 5\n  mean: 1.0\n  std: 0.1\n"


@pytest.mark.parametrize(
    "text, match",
    [
        (GOOD + "Conv_1-input:5x5x192-output:5x5x1152: [1, 2\n", r"line 6: malformed YAML"),
        (GOOD + "Warp-input:5x5x192-output:5x5x1152:\n  mean: 1.0\n", r"line 5: Unknown op 'Warp'"),
        (GOOD + "Conv_1-input:5x5x192:\n  mean: 1.0\n", r"line 5: .*missing field\(s\) output"),
        (GOOD + "Conv_1-input:5x5x192-output:5x5x1152: 3.0\n", r"line 5: op key .* must map to"),
        (GOOD + "Conv_1-input:5x5x192-output:5x5x1152:\n  std: 1.0\n", r"line 5: missing `mean`"),
        (
            GOOD + "Conv_1-input:5x5x192-output:5x5x1152:\n  mean: fast\n",
            r"line 5: `mean` .* must be a number",
        ),
        (
            GOOD + "Conv_1-input:5x5x192-output:5x5x1152:\n  mean: -1.0\n",
            r"line 5: .*`mean` must be a finite",
        ),
        (
            GOOD + "Conv_1-input:5x5x192-output:5x5x1152:\n  mean: 1\n  median: 2\n",
            r"line 7: unknown field 'median'",
        ),
        (
            GOOD + GOOD,
            r"line 5: op key 'Conv-input:160x160x3-output:80x80x24' appears again \(first on line 1\)",
        ),
        ("- 1\n- 2\n", r"line 1: expected a mapping"),
        ("", r"empty file"),
    ],
)
def test_malformed_ofa_files_name_the_line(tmp_path, text: str, match: str) -> None:
    path = _write(tmp_path, "160_lookup_table.yaml", text)
    with pytest.raises(ValueError, match=match):
        lt.import_ofa_yaml(path)


def test_ofa_import_paths_and_devices(tmp_path) -> None:
    p = _write(tmp_path, "table.yaml", GOOD)
    assert lt.import_ofa_yaml(p).resolutions == [None]
    assert lt.import_ofa_yaml(p, resolution=176).resolutions == [176]
    with pytest.raises(FileNotFoundError, match="No such file"):
        lt.import_ofa_yaml(tmp_path / "nope.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No Once-for-All tables"):
        lt.import_ofa_yaml(tmp_path / "empty")
    with pytest.raises(KeyError, match="Unknown device 'pixel9'; known: local-cpu, local-cpu-ort, note10"):
        lt.import_ofa_yaml(p, "pixel9")
    with pytest.raises(ValueError, match="appears again for resolution None"):
        lt.import_ofa_yaml([p, _write(tmp_path, "other.yaml", GOOD)])


def test_ofa_export_round_trip(note10_table, tmp_path) -> None:
    path = lt.export_ofa_yaml(note10_table, tmp_path / "224_lookup_table.yaml", 224)
    back = lt.import_ofa_yaml(path, "note10")
    assert back.keys(224) == note10_table.keys(224)
    key = back.keys(224)[7]
    assert back.get(key, 224) == note10_table.get(key, 224)


CSV_KEY = "nor_conv_3x3-input:32x32x16-output:32x32x16"


def test_plain_csv(tmp_path) -> None:
    headerless = _write(
        tmp_path, "a.csv", f"# measured elsewhere\n{CSV_KEY},0.5,0.01\n\nnb201_add-input:8x8x64,0.01,0\n"
    )
    t = lt.import_csv(headerless, "local-cpu")
    assert len(t) == 2 and t.get(CSV_KEY) == lt.Entry(0.5, 0.01) and t.meta["source"] == "csv"
    header = _write(
        tmp_path, "b.csv", f"std,op_key,mean,resolution\n0.01,{CSV_KEY},0.5,32\n0.02,{CSV_KEY},0.7,\n"
    )
    t = lt.import_csv(header, "local-cpu-ort")
    assert t.get(CSV_KEY, 32).mean == 0.5 and t.get(CSV_KEY).mean == 0.7 and t.device == "local-cpu-ort"
    assert lt.import_csv(headerless, "local-cpu", resolution=32).resolutions == [32]


@pytest.mark.parametrize(
    "text, match",
    [
        (f"{CSV_KEY},0.5,0.01\nFoo-input:1x1x1,1,0\n", r"a.csv: line 2: Unknown op 'Foo'"),
        (f"{CSV_KEY},0.5,0.01\n{CSV_KEY},0.6,0.01\n", r"line 2: op key .* appears again \(first on line 1\)"),
        (f"{CSV_KEY},half,0.01\n", r"line 1: `mean` of op key .* must be a number, but got 'half'"),
        (f"{CSV_KEY},0.5,-2\n", r"line 1: .*`std` must be a finite number"),
        (f"{CSV_KEY}\n", r"line 1: expected the columns .* but got 1 cell"),
        (f"{CSV_KEY},1,2,3,4,5,6,7,8\n", r"line 1: 9 cells but only 8 columns"),
        ("key,mean,std,colour\n", r"line 1: unknown column 'colour'"),
        ("mean,std\n", r"line 1: the header has no 'key' column"),
        (f"key,mean,std\n{CSV_KEY},0.5\n", r"line 2: expected the columns key, mean, std"),
        ("# nothing\n", r"no rows"),
    ],
)
def test_bad_csv_names_the_line(tmp_path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lt.import_csv(_write(tmp_path, "a.csv", text), "local-cpu")


def test_csv_missing_file_and_device(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        lt.import_csv(tmp_path / "none.csv", "local-cpu")
    with pytest.raises(KeyError, match="Unknown device"):
        lt.import_csv(_write(tmp_path, "a.csv", f"{CSV_KEY},1,0\n"), "tpu")
