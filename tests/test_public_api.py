"""The public helpers the edge modules (command line, file formats, interop) are built on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=3).flatmap(
    lambda shape: st.tuples(st.just(tuple(shape)), st.tuples(*(st.integers(1, 12) for _ in shape)))),
    st.integers(1, 4096))
def test_iter_blocks_tile_the_array_with_whole_chunks(shape_chunks: tuple[tuple[int, ...], tuple[int, ...]],
                                                      max_bytes: int) -> None:
    shape, chunks = shape_chunks
    seen = np.zeros(shape, "i4")
    boxes = list(tensordb.iter_blocks(shape, chunks, 8, max_bytes))
    for box in boxes:
        seen[box] += 1
        sizes = [s.stop - s.start for s in box]
        assert all(s.start % c == 0 for s, c in zip(box, chunks))  # chunk-aligned
        assert all(n % c == 0 or s.stop == dim for n, c, s, dim in zip(sizes, chunks, box, shape))
        one_chunk = all(n <= c for n, c in zip(sizes, chunks))
        assert one_chunk or np.prod(sizes) * 8 <= max_bytes
    assert (seen == 1).all()  # every element exactly once
    assert [tuple(s.start for s in b) for b in boxes] == sorted(tuple(s.start for s in b) for b in boxes)


def test_array_iter_blocks_streams_an_array(tmp_path: Path) -> None:
    data = np.arange(300 * 70, dtype="f8").reshape(300, 70)
    with tensordb.open(tmp_path / "b.tdb") as db:
        db["t"] = {}
        db["t"].set("/a", data, chunks=(32, 16))
        a = db["t"]["/a"]
        copy = db["t"].create_array("/b", a.shape, a.dtype, chunks=a.chunks)
        for box in a.iter_blocks(max_bytes=40_000):
            copy[box] = a[box]
        assert np.array_equal(np.asarray(copy), data)
