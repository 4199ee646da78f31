"""Op keys: Once-for-All's format, canonical spelling, and every way a key can be wrong."""

from __future__ import annotations

import pytest

import latency_tables as lt

OFA_BLOCK = "expanded_conv-input:56x56x32-output:56x56x32-expand:192-kernel:5-stride:1-idskip:1-se:0-hs:0"


@pytest.mark.parametrize(
    "key",
    [
        OFA_BLOCK,
        "Conv-input:224x224x3-output:112x112x24",
        "Conv_1-input:7x7x192-output:7x7x1152",
        "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
        "nor_conv_3x3-input:32x32x16-output:32x32x16",
        "nb201_add-input:16x16x32",
        "resnet_basicblock-input:32x32x16-output:16x16x32",
        "transformer_layer-input:16x96-heads:4-head_dim:16-mlp:384",
        "patch_embed-input:16x16x3-output:16x96-patch:4",
        "vit_head-input:16x96-output:10",
    ],
)
def test_canonical_keys_are_fixed_points(key: str) -> None:
    assert lt.canonical_key(key) == key
    parsed = lt.parse_key(key)
    assert str(parsed) == key and lt.format_key(parsed.op, **parsed.fields) == key


def test_canonicalisation_of_variants() -> None:
    shuffled = (
        "expanded_conv-hs:0-se:0-idskip:true-stride:1-kernel:5-expand:192-output:56x56x32-input:56x56x32"
    )
    assert lt.canonical_key(shuffled) == OFA_BLOCK
    assert lt.canonical_key(f"  {OFA_BLOCK.replace('-', ' - ')} ") == OFA_BLOCK
    assert (
        lt.canonical_key("first_conv-input:32x32x3-output:32x32x16") == "Conv-input:32x32x3-output:32x32x16"
    )
    assert lt.canonical_key("logits-output:10-input:1x1x256") == "Logits-input:1x1x256-output:10"
    assert lt.parse_key(OFA_BLOCK).fields["input"] == (56, 56, 32)
    assert lt.format_key(
        "expanded_conv",
        input=[8, 8, 24],
        output=(8, 8, 24),
        expand=72,
        kernel=3,
        stride=1,
        idskip=True,
        se=False,
        hs=True,
    ).endswith("idskip:1-se:0-hs:1")


@pytest.mark.parametrize(
    "key, match",
    [
        ("Foo-input:1x1x1", r"Unknown op 'Foo'.*known ops: .*expanded_conv"),
        ("", "non-empty"),
        ("Conv-input:224x224x3", "missing field.*output"),
        ("Conv-input:224x224x3-output:112x112x24-kernel:3", "no field 'kernel'"),
        ("Conv-input:224x224x3-input:224x224x3-output:1x1x1", "appears twice"),
        ("Conv-input:224x224-output:112x112x24", r"'input' must be NxNxN"),
        ("Conv-input:224x0x3-output:112x112x24", "positive"),
        ("Logits-input:1x1x8-output:ten", "'output' must be N"),
        (OFA_BLOCK.replace("idskip:1", "idskip:2"), "'idskip' must be 0 or 1"),
        (OFA_BLOCK.replace("kernel:5", "kernel5"), "expected 'field:value'"),
        (OFA_BLOCK.replace("expand:192", "expand:-3"), "Malformed"),
    ],
)
def test_bad_keys_name_the_problem(key: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lt.canonical_key(key)


def test_format_key_errors() -> None:
    with pytest.raises(ValueError, match="Unknown op"):
        lt.format_key("Bar", input=(1, 1, 1))
    with pytest.raises(ValueError, match="needs field 'output'"):
        lt.format_key("Conv", input=(1, 1, 1))
    with pytest.raises(ValueError, match="no field"):
        lt.format_key("Conv", input=(1, 1, 1), output=(1, 1, 1), colour=3)
    with pytest.raises(ValueError, match="positive"):
        lt.format_key("Conv", input=(1, 1, 0), output=(1, 1, 1))
