"""The NAS service: job specs, training, search, evaluation, storage, Pareto queries, export, CLI."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_exported"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import nas` (the CLI's start-up) does not import torch.
    if name == "load_exported":
        from nas.export import load_exported

        return load_exported
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
