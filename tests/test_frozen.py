"""Tests of tensordb.frozen through its two classes: Codec and Snapshot are immutable values."""

from __future__ import annotations

import copy
import pickle

import pytest

from tensordb import Codec, Snapshot

VALUES = [Codec("zstd", 1, "byte"), Snapshot(3, "2026-01-01T00:00:00.000Z", "raw import", 2, ("v1",))]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_compare_hash_copy_and_pickle_by_field(value: object) -> None:
    for same in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert same == value and hash(same) == hash(value) and type(same) is type(value)
    assert value != tuple(getattr(value, name) for name in value.__slots__)  # type: ignore[attr-defined]
    assert eval(repr(value)) == value  # noqa: S307 - the repr is the constructor call


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_fields_cannot_be_changed_or_added(value: object) -> None:
    name = value.__slots__[0]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="immutable"):
        setattr(value, name, 1)
    with pytest.raises(AttributeError, match="immutable"):
        delattr(value, name)
    with pytest.raises(AttributeError):
        value.other = 1  # type: ignore[attr-defined]


def test_a_codec_is_validated_and_differs_by_any_field() -> None:
    assert Codec() == Codec("lz4", 5, "byte") != Codec("lz4", 5, "bit")
    assert len({Codec(), Codec("lz4", 5, "byte"), Codec("zstd")}) == 2
    with pytest.raises(ValueError, match="unknown codec"):
        Codec("snappy")
