"""Shared fixtures: the Once-for-All Note10 tables beside the checkout, a cheap protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

import latency_tables as lt

# shared/ lies beside the checkout (as in CI).
OFA_LUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ofa_note10_lut"

# Cheapest protocol that still exercises rounds and interleaving.
TINY = lt.Protocol(warmup=1, rounds=2, iters=2, min_time_s=0.0, chunk=4)


@pytest.fixture(scope="session")
def note10_table() -> lt.LatencyTable:
    if not OFA_LUT.is_dir():
        pytest.skip(f"Once-for-All tables not found at {OFA_LUT}")
    return lt.import_ofa_yaml(OFA_LUT, "note10")
