"""The shipped tables: complete for their spaces at the defaults, with provenance and overhead models."""

from __future__ import annotations

import pytest

import latency_tables as lt
import search_spaces as ss

EXPECTED = [
    ("local-cpu", "mbv3_tiny"),
    ("local-cpu", "nb201"),
    ("local-cpu", "vit_tiny"),
    ("local-cpu-ort", "mbv3_tiny"),
    ("local-cpu-ort", "nb201"),
]


def test_expected_tables_are_shipped() -> None:
    assert set(EXPECTED) <= set(lt.list_shipped())


@pytest.mark.parametrize("device, space", lt.list_shipped())
def test_shipped_table(device: str, space: str) -> None:
    table = lt.LatencyTable.load(lt.shipped_table_path(device, space), device)
    sp = ss.get_space(space)
    cfg = lt.get_device(device)
    assert table.device == device and table.meta["complete"] and table.meta["source"] == "measured"
    assert table.meta["protocol"] == cfg.protocol.to_dict()
    assert {"torch", "cpu", "python"} <= set(table.meta["versions"])
    assert not [k for k in lt.all_keys(sp) if not table.has(k)]
    assert space in table.overhead and table.overhead[space].samples >= 20
    for e in (table.get(k) for k in table.keys()):
        assert e.count and e.count >= 100 and 0 < e.mean and e.p50 <= e.p90
    for seed in range(3):
        arch = sp.sample(seed=seed)
        est = lt.estimate(table, sp, arch)
        assert (
            0.2 * lt.estimate(table, sp, arch, overhead=False)
            < est
            < 5 * lt.estimate(table, sp, arch, overhead=False)
        )
