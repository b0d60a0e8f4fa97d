"""dtype text: exact round trip (byte order, records, titles, alignment) and strict parsing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from strategies import dtypes

import tensordb
from tensordb.arrays.dtypes import dtype_from_text, dtype_to_text

SPECIAL = [
    np.dtype(">f8"),
    np.dtype("<M8[ns]"),
    np.dtype(">m8[D]"),
    np.dtype("S7"),
    np.dtype(">U3"),
    np.dtype("V8"),
    np.dtype([(("a title", "a"), "<i4"), ("b", ">f2")]),
    np.dtype([("a", "i1"), ("b", "<f8")], align=True),
    np.dtype([("a", "i1"), ("s", [("x", ">f2"), ("y", "u1")], (2,))], align=True),
    np.dtype({"names": ["x"], "formats": ["<i2"], "offsets": [4], "itemsize": 12}),
]


def _same(a: np.dtype[Any], b: np.dtype[Any]) -> bool:
    return a == b and a.str == b.str and a.descr == b.descr and a.isalignedstruct == b.isalignedstruct and (
        repr(a) == repr(b)
    )


@pytest.mark.parametrize("dtype", SPECIAL, ids=str)
def test_special_dtypes_round_trip_exactly(dtype: np.dtype[Any]) -> None:
    assert _same(dtype_from_text(dtype_to_text(dtype)), dtype)


@given(dtypes())
def test_every_generated_dtype_round_trips(dtype: np.dtype[Any]) -> None:
    assert _same(dtype_from_text(dtype_to_text(dtype)), dtype)


@pytest.mark.parametrize(
    "text",
    [
        "O", "|O", "<O8", "object", "float32", "<f4; import os", "__import__('os')", "<f4[", "<S99999999999",
        '{"names":["a"],"formats":["|O"],"offsets":[0],"itemsize":8}',
        '{"names":["a"],"formats":["<f4"],"offsets":[-1],"itemsize":4}',
        '{"names":["a"],"formats":["<f4"],"offsets":[0],"itemsize":4,"extra":1}',
        '{"subarray":["<f4",[100000000, 100000000]]}',
        "{not json",
        '{"names":["a"],"formats":["<f4"],"offsets":[0],"itemsize":4,"titles":[1]}',
        42,
        None,
    ],
    ids=repr,
)
def test_hostile_dtype_text_is_a_corruption_error(text: object) -> None:
    with pytest.raises(tensordb.CorruptionError):
        dtype_from_text(text)


def test_object_dtypes_cannot_be_stored() -> None:
    with pytest.raises(TypeError):
        dtype_to_text(np.dtype(object))
    with pytest.raises(TypeError):
        dtype_to_text(np.dtype([("a", "<f4"), ("o", object)]))
