"""Evaluator pools: in-process for ``parallelism: 1``, a pool of Ray actors otherwise.

Each Ray actor builds its evaluator once (a supernet is loaded once per actor) and never opens
the database: the driver sends architectures and receives metric dicts. An actor that dies costs
only the evaluation it was running; the pool starts a replacement.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from nas.search._evaluators import Evaluator, build_evaluator
from nas.search._spec import EvaluatorSpec, SpaceRef

__all__ = ["EvalOutcome", "LocalPool", "RayPool", "make_pool"]

EvalOutcome = tuple[int, dict[str, float] | None, str | None, float]
"""(ticket, metrics or None, error message or None, seconds)."""


class LocalPool:
    """Evaluates in the driver's process, one at a time (submit queues, `wait` runs one)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.size = 1
        self._queue: list[tuple[int, Mapping[str, Any]]] = []
        self._ticket = 0

    @property
    def busy(self) -> int:
        return len(self._queue)

    def submit(self, arch: Mapping[str, Any]) -> int:
        self._ticket += 1
        self._queue.append((self._ticket, arch))
        return self._ticket

    def wait(self) -> list[EvalOutcome]:
        if not self._queue:
            return []
        ticket, arch = self._queue.pop(0)
        t0 = time.perf_counter()
        try:
            return [(ticket, self.evaluator.evaluate(arch), None, time.perf_counter() - t0)]
        except Exception as exc:  # one bad evaluation fails its trial, not the job
            return [(ticket, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)]

    def close(self) -> None:
        self._queue.clear()


def _actor_class() -> Any:
    import ray

    @ray.remote(num_cpus=1, max_restarts=0)
    class EvaluatorActor:
        def __init__(self, evaluator: dict[str, Any], space: dict[str, Any]) -> None:
            import torch

            torch.set_num_threads(1)
            self.evaluator = build_evaluator(EvaluatorSpec(**evaluator), SpaceRef(**space))

        def evaluate(self, arch: dict[str, Any]) -> tuple[dict[str, float], float]:
            t0 = time.perf_counter()
            return self.evaluator.evaluate(arch), time.perf_counter() - t0

        def ready(self) -> bool:
            return True

    return EvaluatorActor


class RayPool:
    """`size` Ray actors, each holding one evaluator; starts a local Ray unless one is running
    or ``RAY_ADDRESS`` names a cluster (and stops what it started on `close`)."""

    def __init__(self, evaluator: EvaluatorSpec, space: SpaceRef, size: int) -> None:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._started = False
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=size, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            self._started = True
        self._ray = ray
        self._args = (evaluator.model_dump(mode="json"), space.model_dump(mode="json"))
        self._cls = _actor_class()
        self.size = size
        self._idle = [self._new_actor() for _ in range(size)]
        ray.get([a.ready.remote() for a in self._idle])
        self._queue: list[tuple[int, Mapping[str, Any]]] = []
        self._running: dict[Any, tuple[int, Any]] = {}
        self._ticket = 0

    def _new_actor(self) -> Any:
        return self._cls.remote(*self._args)

    @property
    def busy(self) -> int:
        return len(self._queue) + len(self._running)

    def submit(self, arch: Mapping[str, Any]) -> int:
        self._ticket += 1
        self._queue.append((self._ticket, dict(arch)))
        self._dispatch()
        return self._ticket

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            ticket, arch = self._queue.pop(0)
            actor = self._idle.pop()
            self._running[actor.evaluate.remote(arch)] = (ticket, actor)

    def wait(self) -> list[EvalOutcome]:
        self._dispatch()
        if not self._running:
            return []
        done, _ = self._ray.wait(list(self._running), num_returns=1)
        out: list[EvalOutcome] = []
        for ref in done:
            ticket, actor = self._running.pop(ref)
            try:
                metrics, seconds = self._ray.get(ref)
                out.append((ticket, metrics, None, seconds))
                self._idle.append(actor)
            except self._ray.exceptions.RayActorError as exc:
                out.append((ticket, None, f"evaluator actor died: {str(exc).splitlines()[0]}", 0.0))
                self._idle.append(self._new_actor())
            except self._ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                out.append((ticket, None, f"{type(cause).__name__}: {cause}", 0.0))
                self._idle.append(actor)
        self._dispatch()
        return out

    def close(self) -> None:
        for actor in [*self._idle, *(a for _, a in self._running.values())]:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._idle, self._running = [], {}
        if self._started:
            self._ray.shutdown()


def make_pool(evaluator: EvaluatorSpec, space: SpaceRef, parallelism: int, local: Evaluator | None = None,
              use_ray: bool | None = None) -> LocalPool | RayPool:
    """In-process for one evaluator (reusing `local` if given), Ray actors otherwise."""
    if use_ray is None:
        use_ray = parallelism > 1
    if not use_ray:
        return LocalPool(local if local is not None else build_evaluator(evaluator, space))
    return RayPool(evaluator, space, parallelism)
