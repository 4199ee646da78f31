"""Canonical op keys: the row keys of every latency table.

A key names one concrete operation at batch 1 with every shape and option that changes its
latency, as ``op-field:value-field:value...``. MBConv-family keys are Once-for-All's, character
for character, so OFA's own tables import without translation::

    Conv-input:224x224x3-output:112x112x24                                    stem
    expanded_conv-input:56x56x32-output:56x56x32-expand:192-kernel:5-stride:1-idskip:1-se:0-hs:0
    Conv_1-input:7x7x192-output:7x7x1152                                      final expand
    AvgPool2D-input:7x7x1152-output:1x1x1152                                  global pooling
    Conv_2-input:1x1x1152-output:1x1x1536                                     feature mix
    Logits-input:1x1x1536-output:1000                                         classifier

(``expand`` is the middle width; a block whose middle width equals its input width has no 1x1
expansion conv, as in OFA.) NAS-Bench-201 and ViT keys follow the same grammar::

    nb201_stem-input:32x32x3-output:32x32x16              conv 3x3 + BN
    nor_conv_3x3-input:32x32x16-output:32x32x16           ReLU-conv-BN (also nor_conv_1x1)
    avg_pool_3x3-input:32x32x16-output:32x32x16
    nb201_add-input:32x32x16                              one addition of two node inputs
    nb201_zeros-input:32x32x16                            a node fed only by 'none' edges
    resnet_basicblock-input:32x32x16-output:16x16x32      the stride-2 reduction block
    nb201_head-input:8x8x64-output:10                     BN-ReLU, global pooling, classifier
    patch_embed-input:16x16x3-output:16x96-patch:4        patch conv + positional embedding
    transformer_layer-input:16x96-heads:4-head_dim:16-mlp:384
    vit_head-input:16x96-output:10                        LayerNorm, token mean, classifier

Shapes are height x width x channels (tokens x width for ViT), booleans are 0/1.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

# Field kinds: "sN" a shape of N positive ints joined by "x", "int" a positive int, "bool" 0/1.
_IO3 = (("input", "s3"), ("output", "s3"))
OP_SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    # Once-for-All MobileNetV3 family
    "Conv": _IO3,
    "expanded_conv": (
        *_IO3,
        ("expand", "int"),
        ("kernel", "int"),
        ("stride", "int"),
        ("idskip", "bool"),
        ("se", "bool"),
        ("hs", "bool"),
    ),
    "Conv_1": _IO3,
    "AvgPool2D": _IO3,
    "Conv_2": _IO3,
    "Logits": (("input", "s3"), ("output", "s1")),
    # NAS-Bench-201
    "nb201_stem": _IO3,
    "nor_conv_1x1": _IO3,
    "nor_conv_3x3": _IO3,
    "avg_pool_3x3": _IO3,
    "nb201_add": (("input", "s3"),),
    "nb201_zeros": (("input", "s3"),),
    "resnet_basicblock": _IO3,
    "nb201_head": (("input", "s3"), ("output", "s1")),
    # Vision transformer
    "patch_embed": (("input", "s3"), ("output", "s2"), ("patch", "int")),
    "transformer_layer": (("input", "s2"), ("heads", "int"), ("head_dim", "int"), ("mlp", "int")),
    "vit_head": (("input", "s2"), ("output", "s1")),
}
"""Every op a key may name, with its fields in canonical order."""

OP_ALIASES: dict[str, str] = {
    "first_conv": "Conv",
    "final_expand": "Conv_1",
    "pool": "AvgPool2D",
    "feature_mix": "Conv_2",
    "logits": "Logits",
}
"""Readable names accepted on input (`MBv3Layer.kind`) and rewritten to OFA's."""

_BOOL_WORDS = {"0": 0, "1": 1, "false": 0, "true": 1}


class OpKey(NamedTuple):
    """A parsed key: the op name and its fields (shapes as int tuples, bools as 0/1)."""

    op: str
    fields: dict[str, Any]

    def __str__(self) -> str:
        return format_key(self.op, **self.fields)


def _bad(key: str, why: str) -> ValueError:
    return ValueError(f"Malformed op key {key!r}: {why}.")


def _parse_value(key: str, field: str, kind: str, raw: str) -> Any:
    raw = raw.strip()
    if kind == "bool":
        if raw.lower() not in _BOOL_WORDS:
            raise _bad(key, f"field {field!r} must be 0 or 1, but got {raw!r}")
        return _BOOL_WORDS[raw.lower()]
    parts = raw.split("x") if kind.startswith("s") else [raw]
    want = int(kind[1:]) if kind.startswith("s") else 1
    if len(parts) != want or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        form = "x".join(["N"] * want) if kind.startswith("s") else "a positive integer"
        raise _bad(key, f"field {field!r} must be {form} (positive integers), but got {raw!r}")
    values = tuple(int(p) for p in parts)
    return values if kind.startswith("s") else values[0]


def parse_key(key: str) -> OpKey:
    """Parse a key, accepting aliases, surrounding spaces, any field order and true/false.

    Raises:
        ValueError: unknown op (the message lists the known ones), a missing, unknown or
            repeated field, or a bad value; the message quotes the key.
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"An op key must be a non-empty string, but got {key!r}.")
    text = key.strip()
    op, *parts = [p.strip() for p in text.split("-")]
    op = OP_ALIASES.get(op, op)
    if op not in OP_SCHEMAS:
        raise ValueError(f"Unknown op {op!r} in key {key!r}; known ops: {', '.join(sorted(OP_SCHEMAS))}.")
    schema = dict(OP_SCHEMAS[op])
    fields: dict[str, Any] = {}
    for part in parts:
        name, sep, raw = part.partition(":")
        name = name.strip()
        if not sep:
            raise _bad(key, f"expected 'field:value' but got {part!r}")
        if name not in schema:
            raise _bad(key, f"op {op!r} has no field {name!r}; its fields are {', '.join(schema)}")
        if name in fields:
            raise _bad(key, f"field {name!r} appears twice")
        fields[name] = _parse_value(key, name, schema[name], raw)
    missing = [f for f in schema if f not in fields]
    if missing:
        raise _bad(key, f"missing field(s) {', '.join(missing)} (op {op!r} needs {', '.join(schema)})")
    return OpKey(op, {f: fields[f] for f in schema})


def format_key(op: str, **fields: Any) -> str:
    """Build the canonical key of `op` from its fields (memoised; see `_format_key`)."""
    try:
        return _format_key_cached(op, **fields)
    except TypeError:  # an unhashable field value (a list shape): no memo
        return _format_key(op, **fields)


def _format_key(op: str, **fields: Any) -> str:
    """Build the canonical key of `op` from its fields (shapes as tuples, bools as bool or 0/1).

    Raises:
        ValueError: unknown op, or a missing, unknown or bad field.
    """
    op = OP_ALIASES.get(op, op)
    if op not in OP_SCHEMAS:
        raise ValueError(f"Unknown op {op!r}; known ops: {', '.join(sorted(OP_SCHEMAS))}.")
    schema = OP_SCHEMAS[op]
    unknown = set(fields) - {f for f, _ in schema}
    if unknown:
        raise ValueError(
            f"Op {op!r} has no field(s) {', '.join(sorted(unknown))}; its fields are "
            f"{', '.join(f for f, _ in schema)}."
        )
    parts = [op]
    for name, kind in schema:
        if name not in fields:
            raise ValueError(f"Op {op!r} needs field {name!r}.")
        value = fields[name]
        if kind.startswith("s"):
            dims = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            text = "x".join(str(int(d)) for d in dims)
        elif kind == "bool":
            text = str(int(bool(value)))
        else:
            text = str(int(value))
        parts.append(f"{name}:{text}")
    key = "-".join(parts)
    parse_key(key)  # validates shapes and values
    return key


def canonical_key(key: str) -> str:
    """The canonical spelling of `key` (see `parse_key` for what is accepted)."""
    return str(parse_key(key))


def canonical_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-friendly copy of parsed fields (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


_format_key_cached = functools.lru_cache(maxsize=1 << 16)(_format_key)
