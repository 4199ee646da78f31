"""The NAS service: job specs, training, search, evaluation, storage, Pareto queries, export, CLI."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
