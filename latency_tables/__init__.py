"""Device latency: devices, the measurement harness, the table format, importers, estimation of a
subnet's latency from its ops, and the check of that estimate against the device.

>>> import latency_tables as lt, search_spaces as ss
>>> space = ss.get_space("mbv3_tiny")
>>> table = lt.find_table("local-cpu", "mbv3_tiny")        # shipped, or $NAS_HOME/latency/...
>>> lt.estimate(table, space, space.sample(seed=0))         # ms, overhead model applied
>>> lt.op_keys(space, space.smallest())[1]
'expanded_conv-input:16x16x16-output:16x16x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0'
"""

from __future__ import annotations

from latency_tables._devices import (
    DEVICES,
    LOCAL_PROTOCOL,
    QUICK_PROTOCOL,
    DeviceCfg,
    Protocol,
    Runtime,
    check_protocol,
    device_versions,
    get_device,
    get_runtime,
    list_devices,
    register_device,
)
from latency_tables._estimate import MissingOpKey, breakdown, estimate, fit_overhead_model
from latency_tables._families import OpFamily, all_keys, get_family, op_keys, resolution_of
from latency_tables._importers import export_ofa_yaml, import_csv, import_ofa_yaml
from latency_tables._keys import OP_SCHEMAS, OpKey, canonical_key, format_key, parse_key
from latency_tables._measure import (
    MeasureResult,
    ProgressFn,
    fit_overhead,
    measure_networks,
    measure_ops,
    measure_table,
    sample_archs,
    time_interleaved,
)
from latency_tables._ops import build_op
from latency_tables._store import DATA_DIR, find_table, list_shipped, shipped_table_path, user_table_path
from latency_tables._table import Entry, LatencyTable, OverheadModel
from latency_tables._timing import LatencyStats, measure, summarize
from latency_tables._validate import ValidationReport, error_metrics, kendall_tau, plot_report, validate

__all__ = [
    "DATA_DIR",
    "DEVICES",
    "LOCAL_PROTOCOL",
    "OP_SCHEMAS",
    "QUICK_PROTOCOL",
    "DeviceCfg",
    "Entry",
    "LatencyStats",
    "LatencyTable",
    "MeasureResult",
    "MissingOpKey",
    "OpFamily",
    "OpKey",
    "OverheadModel",
    "ProgressFn",
    "Protocol",
    "Runtime",
    "ValidationReport",
    "all_keys",
    "breakdown",
    "build_op",
    "canonical_key",
    "check_protocol",
    "device_versions",
    "error_metrics",
    "estimate",
    "export_ofa_yaml",
    "find_table",
    "fit_overhead",
    "fit_overhead_model",
    "format_key",
    "get_device",
    "get_family",
    "get_runtime",
    "import_csv",
    "import_ofa_yaml",
    "kendall_tau",
    "list_devices",
    "list_shipped",
    "measure",
    "measure_networks",
    "measure_ops",
    "measure_table",
    "op_keys",
    "parse_key",
    "plot_report",
    "register_device",
    "resolution_of",
    "sample_archs",
    "shipped_table_path",
    "summarize",
    "time_interleaved",
    "user_table_path",
    "validate",
]
