"""The public helpers the edge modules (command line, file formats, interop) are built on."""

from __future__ import annotations

import numpy as np
import pytest

import tensordb
from tensordb import pointer


@pytest.mark.parametrize("keys", [[], ["data"], ["a/b", "~x", ""], ["0", "1"], ["é", "\x00"]])
def test_pointer_join_and_split_are_inverse(keys: list[str]) -> None:
    assert pointer.split(pointer.join(keys)) == keys


def test_pointer_escapes_as_rfc_6901() -> None:
    assert pointer.escape("a/b~c") == "a~1b~0c"
    assert pointer.unescape("a~1b~0c") == "a/b~c"
    assert pointer.join(["m~n", "a/b"]) == "/m~0n/a~1b"
    with pytest.raises(ValueError, match="escape"):
        pointer.split("/a~2")


def test_validate_accepts_what_can_be_stored_and_names_what_cannot() -> None:
    tensordb.validate({"a": [1, 2.5, None, "x", b"y"], "b": np.zeros((2, 3), "f4"), "c": np.float32(1)})
    with pytest.raises(TypeError, match=r"^/a/1: values of type set cannot be stored"):
        tensordb.validate({"a": [0, {1, 2}]})
    with pytest.raises(TypeError, match="/o"):
        tensordb.validate({"o": np.array([object()])})
    with pytest.raises(TypeError, match="dict keys must be str"):
        tensordb.validate({1: 2})


@pytest.mark.parametrize("dtype", ["<f4", ">i8", "?", "S3", "<U5", "<c16", "<M8[ns]", [("x", "<f4"), ("y", "u1")]])
def test_dtype_text_round_trips(dtype: object) -> None:
    dt = np.dtype(dtype)  # type: ignore[call-overload]
    assert tensordb.dtype_from_text(tensordb.dtype_to_text(dt)) == dt


def test_auto_chunks_are_about_a_mebibyte_and_whole_when_small() -> None:
    assert tensordb.auto_chunks((10, 3), 4) == (10, 3)
    chunks = tensordb.auto_chunks((100_000, 512), 4)
    assert np.prod(chunks) * 4 <= 2**20 and all(c > 0 for c in chunks)


def test_the_public_names_are_listed_and_load_on_first_use() -> None:
    assert set(tensordb.__all__) <= set(dir(tensordb))
    for name in tensordb.__all__:
        assert getattr(tensordb, name) is not None
