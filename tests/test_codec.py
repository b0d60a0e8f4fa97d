"""Tests of tensordb.codec: whole-chunk and partial decoding, header validation."""

from __future__ import annotations

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensordb.codec import Codec, partial_decoding_available
from tensordb.errors import CorruptionError

CODECS = [Codec(), Codec("lz4", 1, "bit"), Codec("blosclz", 9, "none"), Codec("zstd", 0, "byte")]
# A smooth field plus noise, big enough for Blosc2 to split it into several blocks.
FIELD = (np.sin(np.linspace(0, 40, 512 * 300)) + np.random.default_rng(0).normal(0, 1e-3, 512 * 300)).astype("f4")


@pytest.mark.parametrize("codec", CODECS, ids=repr)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_decode_span_returns_the_requested_bytes(codec: Codec, data: st.DataObject) -> None:
    itemsize = data.draw(st.sampled_from([1, 2, 4, 8]), label="itemsize")
    raw = FIELD.view(np.uint8)[: data.draw(st.integers(itemsize, FIELD.nbytes), label="size") // itemsize * itemsize]
    stored = codec.encode(raw, itemsize)
    start = data.draw(st.integers(0, len(raw) - 1), label="start")
    stop = data.draw(st.integers(start + 1, len(raw)), label="stop")
    offset, buffer = codec.decode_span(stored, len(raw), start, stop)
    assert 0 <= offset <= start and offset + len(buffer) >= stop
    assert bytes(buffer[start - offset: stop - offset]) == raw[start:stop].tobytes()


@pytest.mark.skipif(not partial_decoding_available(), reason="this python-blosc2 ships no C library")
def test_decode_span_decodes_only_the_blocks_it_needs() -> None:
    codec = Codec()
    stored = codec.encode(FIELD, 4)
    # one block-sized request that starts inside a block (blosc2_getitem gets such requests wrong)
    _, _, blocksize = blosc2.get_cbuffer_sizes(stored)
    start = blocksize // 2
    offset, buffer = codec.decode_span(stored, FIELD.nbytes, start, start + blocksize)
    assert len(buffer) < FIELD.nbytes and offset % blocksize == 0
    assert bytes(buffer[start - offset: start - offset + blocksize]) == FIELD.tobytes()[start: start + blocksize]


def test_decode_rejects_a_header_that_disagrees_with_the_record() -> None:
    codec = Codec()
    stored = codec.encode(FIELD, 4)
    with pytest.raises(CorruptionError, match="header says"):
        codec.decode(stored, FIELD.nbytes + 4)
    with pytest.raises(CorruptionError, match="header says"):
        codec.decode_span(stored[:-1], FIELD.nbytes, 0, 8)
    with pytest.raises(CorruptionError, match="too short"):
        codec.decode_span(stored[:8], FIELD.nbytes, 0, 8)


def test_the_python_package_fallback_decodes_like_the_c_library() -> None:
    from tensordb.codec import _CODECS, _SHUFFLES, _PyBlosc2

    fallback = _PyBlosc2()
    raw = np.arange(10_000, dtype="<i4")
    stored = fallback.compress(raw, raw.nbytes, _CODECS["lz4"], 5, _SHUFFLES["bit"], 4, 1)
    assert bytes(Codec("lz4", 5, "bit").decode(stored, raw.nbytes)) == raw.tobytes()
    part = bytearray(400)
    fallback.getitem(stored, 250, 100, part)
    assert bytes(part) == raw[250:350].tobytes()


@pytest.mark.parametrize("codec", CODECS, ids=repr)
@pytest.mark.parametrize("raw", [np.arange(24, dtype="<i4").view(np.uint8),  # below the size worth compressing
                                 np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)],  # noise
                         ids=["tiny", "noise"])
def test_a_chunk_blosc2_stored_as_is_is_copied_out_exactly(codec: Codec, raw: np.ndarray) -> None:
    stored = codec.encode(raw, 1)
    assert stored[2] & 0x02 and len(stored) == 32 + raw.nbytes  # Blosc2's "memcpyed" flag: the copy path
    assert bytes(codec.decode(stored, raw.nbytes)) == raw.tobytes()
    out = np.zeros(raw.nbytes // 4, "<i4")
    codec.decode(stored, raw.nbytes, out=out)
    assert out.tobytes() == raw.tobytes()
    assert bytes(blosc2.decompress2(stored)) == raw.tobytes()  # what Blosc2 itself reads there
    with pytest.raises(CorruptionError, match="header says"):
        codec.decode(stored[:-1], raw.nbytes)
    with pytest.raises(ValueError, match="writable"):
        codec.decode(stored, raw.nbytes, out=bytes(raw.nbytes))
