"""The device registry, timing protocols and runtimes."""

from __future__ import annotations

import dataclasses

import pytest

import latency_tables as lt


def test_builtin_devices() -> None:
    assert {"local-cpu", "local-cpu-ort", "note10"} <= set(lt.list_devices())
    cpu = lt.get_device("local-cpu")
    assert (cpu.kind, cpu.runtime, cpu.threads, cpu.batch_size, cpu.dtype) == (
        "cpu",
        "torch",
        1,
        1,
        "float32",
    )
    assert cpu.measurable and isinstance(cpu.protocol, lt.Protocol)
    assert lt.get_device("local-cpu-ort").runtime == "onnxruntime"
    note10 = lt.get_device("note10")
    assert not note10.measurable and note10.protocol is None and dict(note10.versions)["source"]
    assert lt.list_devices("local-*") == ["local-cpu", "local-cpu-ort"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cpu.threads = 4  # type: ignore[misc]
    assert cpu.to_dict()["protocol"]["rounds"] == cpu.protocol.rounds


def test_unknown_device_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="Unknown device 'jetson'; known: local-cpu, local-cpu-ort, note10"):
        lt.get_device("jetson")


def test_registering_devices() -> None:
    with pytest.raises(ValueError, match="already registered"):
        lt.register_device("local-cpu")(lambda: lt.DeviceCfg("local-cpu"))
    cfg = lt.DeviceCfg("x", dtype="float16")
    with pytest.raises(ValueError, match="float32 only"):
        lt.get_runtime(cfg)
    with pytest.raises(ValueError, match="'note10' .* cannot be measured on this machine; import"):
        lt.get_runtime(lt.get_device("note10"))


def test_versions_are_recorded() -> None:
    v = lt.device_versions(lt.get_device("local-cpu"))
    assert {"torch", "python", "platform", "cpu", "cpu_count"} <= set(v)
    assert "source" in lt.device_versions(lt.get_device("note10"))


@pytest.mark.parametrize(
    "kwargs, rule",
    [
        ({"rounds": 0}, "rounds >= 1"),
        ({"iters": 0}, "iters >= 1"),
        ({"warmup": -1}, "warmup >= 0"),
        ({"min_time_s": -0.1}, "min_time_s >= 0"),
        ({"iters": 10, "max_iters": 5}, "max_iters >= iters"),
        ({"trim": 0.5}, "0 <= trim < 0.5"),
        ({"chunk": 0}, "chunk >= 1"),
        ({"clock": "cycles"}, r"clock in \('wall', 'thread'\)"),
    ],
)
def test_protocol_rules(kwargs, rule: str) -> None:
    with pytest.raises(ValueError, match=rf"`{rule}` must hold"):
        lt.Protocol(**kwargs)


def test_thread_clock_needs_one_thread() -> None:
    p = lt.Protocol(clock="thread")
    assert lt.check_protocol(lt.get_device("local-cpu"), p) is p
    assert lt.get_device("local-cpu").protocol.clock == "thread"
    with pytest.raises(ValueError, match="runs 4 threads; use a protocol with clock='wall'"):
        lt.check_protocol(lt.DeviceCfg("big", threads=4), p)
    assert lt.check_protocol(lt.DeviceCfg("big", threads=4), lt.Protocol()).clock == "wall"


def test_protocol_dict_round_trip() -> None:
    p = lt.Protocol(rounds=3)
    assert lt.Protocol.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="Unknown protocol field"):
        lt.Protocol.from_dict({"rounds": 3, "speed": 1})
