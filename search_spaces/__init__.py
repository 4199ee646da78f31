"""Search spaces and weight-sharing supernets (torch/numpy only).

>>> import search_spaces as ss
>>> space = ss.get_space("mbv3_tiny", num_classes=10)
>>> arch = space.sample(seed=0)
>>> net = space.build_supernet(); net.set_active(arch)
"""

from __future__ import annotations

from typing import Any

from search_spaces._base import Arch, Choice, Cost, SearchSpace, Supernet, rng_from
from search_spaces._errors import InvalidArch, InvalidSpaceConfig
from search_spaces._registry import Registry

SPACES: Registry[SearchSpace] = Registry("space")
register_space = SPACES.register


def list_spaces(pattern: str = "*") -> list[str]:
    """Registered space names matching an fnmatch `pattern`."""
    return SPACES.names(pattern)


def get_space(name: str, **overrides: Any) -> SearchSpace:
    """Build a registered space; keyword `overrides` change the preset (e.g. ``num_classes=10``).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        InvalidSpaceConfig: an override the preset does not have, or a bad value.
    """
    return SPACES.create(name, **overrides)


# Importing the implementations registers them.
from search_spaces import _mbv3 as _mbv3  # noqa: E402,F401
from search_spaces import _nb201 as _nb201  # noqa: E402,F401
from search_spaces import _vit as _vit  # noqa: E402,F401

__all__ = [
    "Arch",
    "Choice",
    "Cost",
    "InvalidArch",
    "InvalidSpaceConfig",
    "Registry",
    "SearchSpace",
    "Supernet",
    "get_space",
    "list_spaces",
    "register_space",
    "rng_from",
]
