"""Helpers shared by space presets: keyword overrides and structural checks of arch JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from search_spaces._errors import InvalidArch, InvalidSpaceConfig

C = TypeVar("C")


def apply_overrides(cfg: C, overrides: Mapping[str, Any], space: str) -> C:
    """`dataclasses.replace` for a frozen preset config, refusing keys the preset does not have.

    Lists become tuples so the result stays hashable and JSON lists can be passed in.
    """
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InvalidSpaceConfig(
            f"Unknown override(s) {', '.join(map(repr, unknown))} for space {space!r}; "
            f"allowed: {', '.join(sorted(names))}."
        )
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(cfg, **clean)  # type: ignore[type-var]


def require_keys(space: str, arch: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Raise InvalidArch for a missing or unexpected top-level key."""
    for key in keys:
        if key not in arch:
            raise InvalidArch(space, key, "<missing>", f"the keys {', '.join(keys)}")
    for key in arch:
        if key not in keys:
            raise InvalidArch(space, str(key), arch[key], f"only the keys {', '.join(keys)}")


def require_list(space: str, arch: Mapping[str, Any], key: str, length: int) -> list[Any]:
    """The list under `key`, which must have exactly `length` entries."""
    value = arch[key]
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise InvalidArch(space, key, value, f"a list of {length} values")
    return list(value)
