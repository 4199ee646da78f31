"""The two plugin points of this package: a search space and the supernet it builds.

A space describes its decisions as a flat, ordered list of categorical `Choice`s. Everything
generic (sampling, validation, ids, encodings, mutation, crossover, the smallest and largest
architecture) is derived from that list here, so a new space only says how its natural JSON
form maps to and from the flat parameters, how much an architecture costs, and how to build
its supernet.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from search_spaces._errors import InvalidArch

if TYPE_CHECKING:
    import torch

Arch = dict[str, Any]
"""An architecture: a plain JSON-serialisable mapping in the space's natural form."""


class Cost(TypedDict):
    """Analytic costs of one architecture at batch size 1."""

    macs: int
    params: int
    activation_bytes: int


@dataclass(frozen=True)
class Choice:
    """One categorical decision of a space.

    Attributes:
        name: Flat parameter name, e.g. ``"ks.3"``; also the Optuna parameter name.
        options: Allowed values, ordered from cheapest to most expensive.
        field: How the value is addressed in the natural JSON form, e.g. ``"ks[3]"``.
    """

    name: str
    options: tuple[Any, ...]
    field: str


def rng_from(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A generator from a seed, an existing generator (used as is) or None (fresh entropy)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class SearchSpace(abc.ABC):
    """A family of architectures and the supernet that holds them all.

    Subclasses implement `choices`, `to_params`, `from_params`, `cost` and `build_supernet`;
    they may override `inactive` (decisions that have no effect, e.g. blocks beyond the active
    depth) so that equivalent architectures share one `arch_id` and one encoding.

    Thread-safety: a space is immutable after construction and safe to share.
    """

    name: str

    def __init__(self, name: str, overrides: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.overrides: dict[str, Any] = dict(overrides or {})
        self._choices: tuple[Choice, ...] | None = None

    # ----- what a space must say -------------------------------------------------------------
    @abc.abstractmethod
    def _build_choices(self) -> Sequence[Choice]:
        """The space's decisions, in a fixed order."""

    @abc.abstractmethod
    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Flatten an architecture into ``{choice name: value}``.

        Raises:
            InvalidArch: a key is missing, unknown, or a list has the wrong length.
        """

    @abc.abstractmethod
    def from_params(self, params: Mapping[str, Any]) -> Arch:
        """Rebuild the natural JSON form from flat parameters (inverse of `to_params`)."""

    @abc.abstractmethod
    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """Analytic MACs, parameters and peak activation bytes at batch 1 (float32)."""

    @abc.abstractmethod
    def build_supernet(self) -> Supernet:
        """A freshly initialised weight-sharing supernet for this space."""

    @abc.abstractmethod
    def input_shape(self, arch: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, height, width) of one input image for `arch`."""

    def inactive(self, params: Mapping[str, Any]) -> set[str]:
        """Names of choices that have no effect in `params` (default: none)."""
        return set()

    # ----- derived -----------------------------------------------------------------------------
    def choices(self) -> tuple[Choice, ...]:
        if self._choices is None:
            self._choices = tuple(self._build_choices())
        return self._choices

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., **overrides}``: enough to rebuild this space with `get_space`."""
        return {"name": self.name, **self.overrides}

    def sample(self, seed: int | np.random.Generator | None = None) -> Arch:
        """A uniformly random architecture (each choice drawn independently)."""
        rng = rng_from(seed)
        return self.from_params({c.name: c.options[int(rng.integers(len(c.options)))] for c in self.choices()})

    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Check `arch` and return it as a plain dict.

        Raises:
            InvalidArch: naming the first bad field and its allowed values.
        """
        if not isinstance(arch, Mapping):
            raise InvalidArch(self.name, "arch", arch, "a JSON object")
        params = self.to_params(arch)
        for choice in self.choices():
            value = params[choice.name]
            if not _is_option(value, choice.options):
                raise InvalidArch(self.name, choice.field, value, choice.options)
        return self.from_params(params)

    def smallest(self) -> Arch:
        """The architecture taking the first (cheapest) option of every choice."""
        return self.from_params({c.name: c.options[0] for c in self.choices()})

    def largest(self) -> Arch:
        """The architecture taking the last (most expensive) option of every choice."""
        return self.from_params({c.name: c.options[-1] for c in self.choices()})

    def canonical_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Validated flat parameters with inactive choices set to None."""
        params = self.to_params(self.validate(arch))
        for name in self.inactive(params):
            params[name] = None
        return params

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        """Canonical, stable id: equal for architectures that build the same network."""
        params = self.canonical_params(arch)
        payload = json.dumps([self.name, [params[c.name] for c in self.choices()]], separators=(",", ":"))
        return f"{self.name}-{hashlib.sha1(payload.encode()).hexdigest()[:16]}"

    def encoding_length(self) -> int:
        return sum(len(c.options) for c in self.choices())

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """Fixed-length float32 one-hot vector (all zeros for an inactive choice)."""
        params = self.canonical_params(arch)
        out = np.zeros(self.encoding_length(), dtype=np.float32)
        offset = 0
        for c in self.choices():
            value = params[c.name]
            if value is not None:
                out[offset + _option_index(value, c.options)] = 1.0
            offset += len(c.options)
        return out

    def mutate(
        self, arch: Mapping[str, Any], seed: int | np.random.Generator | None = None, prob: float | None = None
    ) -> Arch:
        """Resample each choice with probability `prob` (default 1/#choices); at least one changes."""
        rng = rng_from(seed)
        choices = [c for c in self.choices() if len(c.options) > 1]
        params = self.to_params(self.validate(arch))
        p = 1.0 / max(len(choices), 1) if prob is None else prob
        flips = rng.random(len(choices)) < p
        if not flips.any() and choices:
            flips[int(rng.integers(len(choices)))] = True
        for c, flip in zip(choices, flips):
            if flip:
                others = [o for o in c.options if o != params[c.name]]
                params[c.name] = others[int(rng.integers(len(others)))]
        return self.from_params(params)

    def crossover(
        self, a: Mapping[str, Any], b: Mapping[str, Any], seed: int | np.random.Generator | None = None
    ) -> Arch:
        """Uniform crossover: each choice comes from `a` or `b` with equal probability."""
        rng = rng_from(seed)
        pa, pb = self.to_params(self.validate(a)), self.to_params(self.validate(b))
        take_a = rng.random(len(self.choices())) < 0.5
        return self.from_params({c.name: (pa if t else pb)[c.name] for c, t in zip(self.choices(), take_a)})

    def arch_str(self, arch: Mapping[str, Any]) -> str:
        """A compact, human-readable string form; `from_str` inverts it."""
        return json.dumps(self.validate(arch), separators=(",", ":"), sort_keys=True)

    def from_str(self, text: str) -> Arch:
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArch(self.name, "arch", text, f"a JSON object ({exc})") from None
        return self.validate(arch)

    def describe(self) -> dict[str, Any]:
        """A JSON summary for `nas spaces NAME` and the REST API."""
        return {
            "name": self.name,
            "overrides": self.overrides,
            "choices": [{"name": c.name, "options": list(c.options)} for c in self.choices()],
            "encoding_length": self.encoding_length(),
            "size": float(np.prod([float(len(c.options)) for c in self.choices()])),
            "smallest": {"arch": self.smallest(), **self.cost(self.smallest())},
            "largest": {"arch": self.largest(), **self.cost(self.largest())},
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


def _is_option(value: Any, options: Sequence[Any]) -> bool:
    # Exact types: True must not pass for 1, nor "3" for 3.
    return any(type(value) is type(o) and value == o for o in options)


def _option_index(value: Any, options: Sequence[Any]) -> int:
    for i, o in enumerate(options):
        if value == o:
            return i
    raise ValueError(f"{value!r} is not one of {list(options)}")


class Supernet(abc.ABC):
    """Mixin contract for a weight-sharing supernet (also a ``torch.nn.Module``).

    ``set_active(arch)`` selects the subnet that ``forward`` runs; ``extract(arch)`` returns a
    standalone static module with copied weights that gives the same outputs in eval mode.
    """

    space: SearchSpace

    @abc.abstractmethod
    def set_active(self, arch: Mapping[str, Any]) -> None:
        """Make `forward` run the subnet `arch` (validated)."""

    @abc.abstractmethod
    def extract(self, arch: Mapping[str, Any] | None = None) -> torch.nn.Module:
        """A standalone static module for `arch` (default: the active one), weights copied."""

    @property
    @abc.abstractmethod
    def active_arch(self) -> Arch:
        """The architecture `forward` currently runs."""
