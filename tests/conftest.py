"""Shared test set-up: one torch thread (CI has 2 cores and pytest runs alongside services)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
