"""Errors raised for bad architectures and bad space configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class InvalidArch(ValueError):
    """An architecture does not belong to a space.

    Attributes:
        space: The space's name.
        field: The offending field, e.g. ``"ks[3]"`` or ``"r"``.
        value: The value found there.
        allowed: What the field may hold (a list of options or a description).
    """

    def __init__(self, space: str, field: str, value: Any, allowed: Sequence[Any] | str) -> None:
        self.space, self.field, self.value, self.allowed = space, field, value, allowed
        allowed_txt = allowed if isinstance(allowed, str) else ", ".join(repr(a) for a in allowed)
        super().__init__(
            f"Invalid architecture for space {space!r}: {field} = {value!r}; allowed: {allowed_txt}."
        )


class InvalidSpaceConfig(ValueError):
    """A keyword override of a space preset is unknown or out of range."""
