"""Progress display: a rich progress bar with one line of metrics per epoch.

In-process training calls `RichSink` directly. Ray workers cannot draw on the driver's terminal,
so the rank-0 worker appends events to a JSON-lines file in the run directory (`FileSink`) and
the driver replays them into its `RichSink` (`tail_into`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["FileSink", "RecordingSink", "RichSink", "tail_into"]


def metrics_line(m: dict[str, Any]) -> str:
    return (
        f"epoch {m['epoch'] + 1}/{m['epochs']} [{m['phase']}] train loss {m['train_loss']:.3f} | "
        f"largest: acc {m['largest_accuracy']:.4f} loss {m['largest_loss']:.3f} | "
        f"smallest: acc {m['smallest_accuracy']:.4f} loss {m['smallest_loss']:.3f} | {m['elapsed_s']:.0f}s"
    )


class RichSink:
    """A rich progress bar over training steps plus per-epoch metric lines.

    Use as a context manager; `enabled=False` prints only the epoch lines (for logs and tests).
    """

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RichSink:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def _print(self, text: str) -> None:
        (self._progress.console if self._progress is not None else self.console).print(text, markup=False)

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                "training", total=total_steps, completed=start_step, loss="-"
            )

    def step(self, step: int, loss: float, phase: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=step, loss=f"{loss:.3f}", description=f"training [{phase}]"
            )

    def epoch(self, metrics: dict[str, Any]) -> None:
        self._print(metrics_line(metrics))

    def message(self, text: str) -> None:
        self._print(text)


class RecordingSink:
    """Keeps every event (tests)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        self.events.append(("start", (total_steps, start_step, steps_per_epoch)))

    def step(self, step: int, loss: float, phase: str) -> None:
        self.events.append(("step", (step, loss, phase)))

    def epoch(self, metrics: dict[str, Any]) -> None:
        self.events.append(("epoch", metrics))

    def message(self, text: str) -> None:
        self.events.append(("message", text))


class FileSink:
    """Appends progress events as JSON lines (steps throttled to one per `interval` seconds)."""

    def __init__(self, path: str | Path, interval: float = 0.5) -> None:
        self.path, self.interval = Path(path), interval
        self._last = 0.0

    def _write(self, event: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def start(self, total_steps: int, start_step: int, steps_per_epoch: int) -> None:
        self._write(
            {
                "type": "start",
                "total_steps": total_steps,
                "start_step": start_step,
                "steps_per_epoch": steps_per_epoch,
            }
        )

    def step(self, step: int, loss: float, phase: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write({"type": "step", "step": step, "loss": loss, "phase": phase, "time": time.time()})

    def epoch(self, metrics: dict[str, Any]) -> None:
        self._write({"type": "epoch", "metrics": metrics})

    def message(self, text: str) -> None:
        self._write({"type": "message", "text": text})


def tail_into(path: Path, sink: Any, stop: threading.Event, poll: float = 0.25) -> threading.Thread:
    """Start a thread replaying `path`'s events into `sink` until `stop` is set (then drain)."""

    def run() -> None:
        pos = 0
        buf = ""
        while True:
            done = stop.is_set()
            if path.exists():
                with open(path) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    kind = ev.get("type")
                    if kind == "start":
                        sink.start(ev["total_steps"], ev["start_step"], ev["steps_per_epoch"])
                    elif kind == "step":
                        sink.step(ev["step"], ev["loss"], ev["phase"])
                    elif kind == "epoch":
                        sink.epoch(ev["metrics"])
                    elif kind == "message":
                        sink.message(ev["text"])
            if done:
                return
            stop.wait(poll)

    th = threading.Thread(target=run, name="nas-train-progress", daemon=True)
    th.start()
    return th
