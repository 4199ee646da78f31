"""A small append-only registry: one per plugin point (spaces, devices, predictors, ...)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Duplicate names raise: two plugins must not silently shadow each other.

    Args:
        kind: What is registered ("space", "device", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a factory under `name` (default: the factory's ``__name__``)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._factories:
                raise ValueError(f"A {self.kind} named {key!r} is already registered.")
            self._factories[key] = factory
            return factory

        return deco

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching an fnmatch `pattern`, sorted."""
        return sorted(n for n in self._factories if fnmatch.fnmatchcase(n, pattern))

    def get_factory(self, name: str) -> Callable[..., T]:
        """The factory for `name`; an unknown name raises KeyError listing the known ones."""
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise KeyError(f"Unknown {self.kind} {name!r}; known: {known}.") from None

    def create(self, name: str, **overrides: object) -> T:
        return self.get_factory(name)(**overrides)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
