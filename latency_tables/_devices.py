"""Target devices: a registry of frozen configurations and the runtimes that time ops on them.

A `DeviceCfg` says what a latency number means: where it was measured (kind), by which runtime,
with how many threads, at which batch size and dtype, under which protocol, and (for devices we
cannot reach) which software versions the imported numbers came from. Local devices record their
versions when they measure (`device_versions`).
"""

from __future__ import annotations

import abc
import io
import os
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import nn

from search_spaces import Registry


@dataclass(frozen=True)
class Protocol:
    """How ops are timed (see `latency_tables.time_interleaved`).

    Keys are timed in chunks of `chunk`; inside a chunk every key gets `warmup` untimed calls,
    then `rounds` rounds visit the keys in a fresh random order, each round timing one key for at
    least `iters` calls and `min_time_s` seconds (at most `max_iters`). Statistics pool all rounds
    and trim `trim` from each end, so a burst of noise lands on many keys a little rather than on
    one key a lot.

    `statistic` is the entry field estimates sum (``mean``, ``p50`` or ``min``), recorded with
    the table. The fastest call (``min``) is the most repeatable on a shared machine whose load
    comes in bursts: a burst slows every call it overlaps, never speeds one up.

    `max_slowdown` turns on the speed guard (`latency_tables._guard`): a visit to a key counts
    only if a reference op, timed just before and after it, ran within this factor of its best
    time, so slow epochs of a shared machine are waited out instead of measured.

    `clock` is ``wall`` (``time.perf_counter_ns``) or ``thread`` (``time.thread_time_ns``: the
    calling thread's CPU time). On a single-threaded device whose runtime computes on the calling
    thread (torch with one intra-op thread, ONNX Runtime with one), the thread clock equals the
    wall clock of an idle machine but leaves out the time the OS hands to other processes, so a
    shared machine still gives usable numbers. It is refused for devices with more threads.
    """

    warmup: int = 10
    rounds: int = 8
    iters: int = 20
    min_time_s: float = 0.02
    max_iters: int = 2000
    trim: float = 0.1
    chunk: int = 16
    clock: str = "wall"
    statistic: str = "mean"
    max_slowdown: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "warmup >= 0": self.warmup >= 0,
            "rounds >= 1": self.rounds >= 1,
            "iters >= 1": self.iters >= 1,
            "min_time_s >= 0": self.min_time_s >= 0,
            "max_iters >= iters": self.max_iters >= self.iters,
            "0 <= trim < 0.5": 0 <= self.trim < 0.5,
            "chunk >= 1": self.chunk >= 1,
            "clock in ('wall', 'thread')": self.clock in ("wall", "thread"),
            "statistic in ('mean', 'p50', 'min')": self.statistic in ("mean", "p50", "min"),
            "max_slowdown is None or max_slowdown > 1": self.max_slowdown is None or self.max_slowdown > 1,
        }
        for rule, ok in checks.items():
            if not ok:
                raise ValueError(f"`{rule}` must hold for a timing protocol, but got {self}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"Unknown protocol field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}."
            )
        return cls(**data)


LOCAL_PROTOCOL = Protocol(
    warmup=10, rounds=8, iters=20, min_time_s=0.02, chunk=16, clock="thread", statistic="min"
)
"""The built-in local devices' protocol (single-threaded, so the thread clock applies). Estimates
sum the fastest call (`min`): measured here, it put 100% of 100 mbv3_tiny subnets within +/-10%
(tau 0.91) where the mean gave 68-85%, because this shared machine's load comes in bursts."""

QUICK_PROTOCOL = Protocol(warmup=3, rounds=3, iters=5, min_time_s=0.0, chunk=8, clock="thread")
"""A cheap protocol for smoke tests (not for numbers anyone should believe)."""


@dataclass(frozen=True)
class DeviceCfg:
    """A target device.

    Attributes:
        name: Registry name, e.g. ``"local-cpu"``.
        kind: What it is: ``cpu``, ``gpu``, ``mobile-cpu``, ...
        runtime: What runs the ops: ``torch`` (eager), ``onnxruntime``, or ``external`` (tables
            measured elsewhere and imported; nothing here can measure it).
        threads: Intra-op threads while timing.
        batch_size: Batch size of every timed call.
        dtype: Element type of inputs and weights.
        description: One line for humans.
        protocol: How it is timed (None: unknown, e.g. an imported table).
        versions: Software versions recorded for the device (imported tables); local runtimes
            record theirs at measurement time.
    """

    name: str
    kind: str = "cpu"
    runtime: str = "torch"
    threads: int = 1
    batch_size: int = 1
    dtype: str = "float32"
    description: str = ""
    protocol: Protocol | None = field(default_factory=Protocol)
    versions: tuple[tuple[str, str], ...] = ()

    @property
    def measurable(self) -> bool:
        return self.runtime in RUNTIMES

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["versions"] = dict(self.versions)
        return d


DEVICES: Registry[DeviceCfg] = Registry("device")
register_device = DEVICES.register


def list_devices(pattern: str = "*") -> list[str]:
    """Registered device names matching an fnmatch `pattern`."""
    return DEVICES.names(pattern)


def get_device(name: str) -> DeviceCfg:
    """The registered device `name`.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    return DEVICES.create(name)


@register_device("local-cpu")
def local_cpu() -> DeviceCfg:
    return DeviceCfg(
        "local-cpu",
        "cpu",
        "torch",
        1,
        1,
        "float32",
        "this machine's CPU, PyTorch eager, 1 thread, batch 1",
        protocol=LOCAL_PROTOCOL,
    )


@register_device("local-cpu-ort")
def local_cpu_ort() -> DeviceCfg:
    return DeviceCfg(
        "local-cpu-ort",
        "cpu",
        "onnxruntime",
        1,
        1,
        "float32",
        "this machine's CPU, ONNX Runtime (CPU EP), 1 thread, batch 1",
        protocol=LOCAL_PROTOCOL,
    )


@register_device("note10")
def note10() -> DeviceCfg:
    return DeviceCfg(
        "note10",
        "mobile-cpu",
        "external",
        1,
        1,
        "float32",
        "Samsung Galaxy Note10 CPU, Once-for-All's published tables (import only; not measurable here)",
        protocol=None,
        versions=(
            ("source", "mit-han-lab/once-for-all tutorial/checkpoints/latency_table@note10 (698a5c1)"),
        ),
    )


# ----- runtimes ----------------------------------------------------------------------------------
class Runtime(abc.ABC):
    """Turns a torch module and its inputs into a zero-argument call to time on one device.

    Thread-safety: not thread-safe; one measurement at a time per process.
    """

    name: str

    @abc.abstractmethod
    def prepare(
        self, module: nn.Module, inputs: Sequence[torch.Tensor], device: DeviceCfg
    ) -> Callable[[], Any]:
        """A call that runs `module(*inputs)` on `device` (module in eval mode, weights fixed)."""

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Software versions that affect this runtime's timings."""

    def pin_threads(self, device: DeviceCfg) -> None:
        """Set process-wide thread counts for timing (default: torch's intra-op threads)."""
        torch.set_num_threads(device.threads)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class TorchRuntime(Runtime):
    """PyTorch eager on the CPU (calls run under ``torch.inference_mode`` in the harness)."""

    name = "torch"

    def prepare(
        self, module: nn.Module, inputs: Sequence[torch.Tensor], device: DeviceCfg
    ) -> Callable[[], Any]:
        module.eval()
        args = tuple(inputs)

        def call() -> Any:
            return module(*args)

        return call

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


class OrtRuntime(Runtime):
    """ONNX Runtime's CPU execution provider: each module is exported (opset 17, TorchScript
    exporter) and run in its own session with `threads` intra-op threads, sequential execution
    and all graph optimisations."""

    name = "onnxruntime"

    def _ort(self) -> Any:
        try:
            import onnxruntime  # noqa: PLC0415
        except ImportError:
            raise ImportError(
                "The onnxruntime device needs ONNX Runtime: `pip install onnx onnxruntime`."
            ) from None
        return onnxruntime

    def export(self, module: nn.Module, inputs: Sequence[torch.Tensor]) -> bytes:
        buf = io.BytesIO()
        names = [f"x{i}" for i in range(len(inputs))]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                tuple(inputs),
                buf,  # type: ignore[arg-type]  # file objects are accepted
                input_names=names,
                opset_version=17,
                dynamo=False,
            )
        return buf.getvalue()

    def prepare(
        self, module: nn.Module, inputs: Sequence[torch.Tensor], device: DeviceCfg
    ) -> Callable[[], Any]:
        ort = self._ort()
        model = self.export(module, inputs)
        so = ort.SessionOptions()
        so.intra_op_num_threads = device.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in sess.get_inputs()}
        feeds = {f"x{i}": t.numpy() for i, t in enumerate(inputs) if f"x{i}" in wanted}
        run = sess.run

        def call() -> Any:
            return run(None, feeds)

        return call

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"), "torch": torch.__version__}


RUNTIMES: dict[str, Runtime] = {"torch": TorchRuntime(), "onnxruntime": OrtRuntime()}


def check_protocol(device: DeviceCfg, protocol: Protocol) -> Protocol:
    """`protocol`, if it can time `device` (the thread clock needs a single-threaded device)."""
    if protocol.clock == "thread" and device.threads != 1:
        raise ValueError(
            f"The thread clock measures one thread's CPU time, but device {device.name!r} runs "
            f"{device.threads} threads; use a protocol with clock='wall'."
        )
    return protocol


def get_runtime(device: DeviceCfg) -> Runtime:
    """The runtime that measures `device`.

    Raises:
        ValueError: the device cannot be measured here (an imported device such as ``note10``).
    """
    if device.dtype != "float32":
        raise ValueError(
            f"Device {device.name!r} uses dtype {device.dtype!r}; this harness measures float32 only."
        )
    try:
        return RUNTIMES[device.runtime]
    except KeyError:
        raise ValueError(
            f"Device {device.name!r} (runtime {device.runtime!r}) cannot be measured on this machine; "
            f"import its tables instead (`nas latency import`). Measurable runtimes: {', '.join(RUNTIMES)}."
        ) from None


def device_versions(device: DeviceCfg) -> dict[str, str]:
    """Versions to record with a table measured now on `device` (the runtime's, Python's, the CPU's)."""
    out = dict(device.versions)
    if device.measurable:
        out.update(RUNTIMES[device.runtime].versions())
        out.update(
            python=platform.python_version(),
            platform=platform.platform(),
            cpu=_cpu_model(),
            cpu_count=str(os.cpu_count()),
        )
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
