"""Chunk compression (bytes in, bytes out) and payload compression.

:class:`Codec` is a frozen value object describing how an array's chunks are
compressed with Blosc2. It is stored as JSON in the ``array.codec`` column.
Only Blosc2's raw buffer functions (``compress2``/``decompress2``) are used:
the frame/unpack helpers of python-blosc2 may unpickle, and stored bytes are
untrusted input.

Example
-------
>>> c = Codec("zstd", level=5, shuffle="byte")
>>> c.decode(c.encode(b"abcd" * 100, typesize=4), 400) == b"abcd" * 100
True
"""

from __future__ import annotations

import ctypes
import functools
import glob
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blosc2
import zstandard

from .errors import CorruptionError

__all__ = ["Codec", "DEFAULT_CODEC", "compress_payload", "decompress_payload", "MAX_CHUNK_BYTES",
           "partial_decoding_available"]

# Let other Python threads run while Blosc2 (de)compresses: chunks are
# compressed by a thread pool, and readers in other threads must not stall.
blosc2.set_releasegil(True)

_CODECS: dict[str, blosc2.Codec] = {
    "blosclz": blosc2.Codec.BLOSCLZ,
    "lz4": blosc2.Codec.LZ4,
    "lz4hc": blosc2.Codec.LZ4HC,
    "zlib": blosc2.Codec.ZLIB,
    "zstd": blosc2.Codec.ZSTD,
}
_SHUFFLES: dict[str, blosc2.Filter] = {
    "none": blosc2.Filter.NOFILTER,
    "byte": blosc2.Filter.SHUFFLE,
    "bit": blosc2.Filter.BITSHUFFLE,
}
# Blosc2 buffers hold less than 2 GiB; keep a margin for its header.
MAX_CHUNK_BYTES = 2**31 - 1024
# Blosc2's typesize is a byte; wider items (big records) are shuffled as bytes.
_MAX_TYPESIZE = 255


@dataclass(frozen=True)
class Codec:
    """How the chunks of an array are compressed (Blosc2).

    Parameters
    ----------
    name : {"zstd", "lz4", "lz4hc", "zlib", "blosclz"}
        The Blosc2 compressor.
    level : int
        Compression level, 0 (store) to 9.
    shuffle : {"byte", "bit", "none"}
        The Blosc2 shuffle filter applied before compression.

    Example
    -------
    >>> tensordb.Codec("zstd", level=5, shuffle="bit")
    Codec(name='zstd', level=5, shuffle='bit')
    """

    name: str = "zstd"
    level: int = 5
    shuffle: str = "byte"

    def __post_init__(self) -> None:
        if self.name not in _CODECS:
            raise ValueError(f"unknown codec {self.name!r}; expected one of {sorted(_CODECS)}")
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 0 <= self.level <= 9:
            raise ValueError(f"codec level must be an int from 0 to 9, got {self.level!r}")
        if self.shuffle not in _SHUFFLES:
            raise ValueError(f"unknown shuffle {self.shuffle!r}; expected one of {sorted(_SHUFFLES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "shuffle": self.shuffle}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: object) -> Codec:
        """Build a codec from stored JSON metadata; malformed input is a CorruptionError."""
        if not isinstance(d, dict) or set(d) != {"name", "level", "shuffle"}:
            raise CorruptionError(f"malformed codec description {d!r}")
        try:
            return cls(d["name"], d["level"], d["shuffle"])
        except ValueError as exc:
            raise CorruptionError(f"invalid codec description: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> Codec:
        try:
            return cls.from_dict(json.loads(text))
        except (TypeError, json.JSONDecodeError):
            raise CorruptionError(f"malformed codec description {text!r}") from None

    def fingerprint(self, typesize: int) -> bytes:
        """Bytes identifying the stored form of a chunk, mixed into its content key."""
        return f"{self.name}:{self.level}:{self.shuffle}:{_blosc_typesize(typesize)}".encode()

    def encode(self, raw: Any, typesize: int) -> bytes:
        """Compress one chunk's raw bytes."""
        nbytes = memoryview(raw).nbytes
        return blosc2.compress2(  # type: ignore[no-any-return]
            raw,
            codec=_CODECS[self.name],
            # Blosc2 stores buffers this small as they are, yet setting up a
            # compressor costs 20 us: level 0 skips that (the header says how to decode).
            clevel=self.level if nbytes >= _MIN_COMPRESSIBLE_BYTES else 0,
            filters=[_SHUFFLES[self.shuffle]],
            filters_meta=[0],
            typesize=_blosc_typesize(typesize),
            nthreads=_threads_for(nbytes),
        )

    def decode(self, stored: bytes | memoryview, expected_size: int, out: Any = None) -> Any:
        """Decompress one chunk into ``out`` (or a new bytearray), refusing a header that disagrees.

        The declared sizes are checked *before* any allocation, so a damaged or
        hostile buffer can never make us allocate more than ``expected_size``.
        """
        _check_header(stored, expected_size)
        if out is None:
            out = bytearray(expected_size)
        try:
            blosc2.decompress2(stored, dst=out, nthreads=_threads_for(expected_size))
        except Exception as exc:
            raise CorruptionError(f"chunk does not decompress: {exc}") from None
        return out

    def decode_span(self, stored: bytes | memoryview, expected_size: int, start: int, stop: int
                    ) -> tuple[int, Any]:
        """Decompress at least raw bytes ``[start, stop)`` of a chunk: ``(offset, buffer)``.

        Blosc2 compresses a chunk as independent blocks; only the blocks that
        overlap the span are decompressed (``blosc2_getitem``). The returned
        buffer holds the raw bytes from ``offset`` on, a whole number of
        blocks. Without partial decoding, the whole chunk is returned.
        """
        blocksize = _check_header(stored, expected_size)
        getitem = _blosc2_getitem()
        typesize = stored[3]
        first = start // blocksize * blocksize if blocksize else 0
        last = min(expected_size, -(-stop // blocksize) * blocksize) if blocksize else expected_size
        if (getitem is None or not 0 <= start < stop <= expected_size or last - first >= expected_size
                or typesize == 0 or first % typesize or (last - first) % typesize):
            return 0, self.decode(stored, expected_size)
        out = bytearray(last - first)
        # Whole blocks only: a request of exactly one block's size that starts
        # inside a block comes back wrong from blosc2_getitem (c-blosc2 2.x).
        done = getitem(bytes(stored), len(stored), first // typesize, (last - first) // typesize,
                       (ctypes.c_char * len(out)).from_buffer(out), len(out))
        if done != len(out):
            raise CorruptionError(f"chunk does not decompress (blosc2_getitem returned {done})")
        return first, out


# Blosc2 starts a thread pool per call when asked for several threads, which
# costs more than (de)compressing a small chunk: chunks below this size are
# done in the calling thread (many chunks are processed in parallel instead).
_THREADED_CHUNK_BYTES = 4 * 1024 * 1024
_MIN_COMPRESSIBLE_BYTES = 128


def _threads_for(nbytes: int) -> int:
    return int(blosc2.nthreads) if nbytes >= _THREADED_CHUNK_BYTES else 1


def _check_header(stored: bytes | memoryview, expected_size: int) -> int:
    """Validate a Blosc2 chunk header against what the record expects; return its block size."""
    if len(stored) < 16:
        raise CorruptionError(f"compressed chunk too short ({len(stored)} bytes)")
    try:
        nbytes, cbytes, blocksize = blosc2.get_cbuffer_sizes(stored)
    except Exception as exc:  # blosc2 raises assorted types on garbage
        raise CorruptionError(f"unreadable compressed chunk header: {exc}") from None
    if nbytes != expected_size or cbytes != len(stored):
        raise CorruptionError(
            f"compressed chunk header says {nbytes} bytes from {cbytes}, "
            f"expected {expected_size} bytes from {len(stored)}"
        )
    return int(blocksize) if 0 < blocksize <= max(nbytes, 1) else 0


@functools.cache
def _blosc2_getitem() -> Callable[..., int] | None:
    """``blosc2_getitem`` from the C library python-blosc2 ships, or None where it is not shipped.

    python-blosc2 exposes no partial decoding of a raw chunk buffer; the C
    library beside its extension module does.
    """
    folder = os.path.join(os.path.dirname(blosc2.__file__), "lib")
    for pattern in ("libblosc2.so*", "libblosc2*.dylib", "blosc2*.dll", "libblosc2*.dll"):
        for candidate in sorted(glob.glob(os.path.join(folder, pattern))):
            try:
                lib = ctypes.CDLL(candidate)
                fn = lib.blosc2_getitem
                lib.blosc2_init()
            except (OSError, AttributeError):
                continue
            fn.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                           ctypes.c_int32]
            fn.restype = ctypes.c_int
            return fn
    return None


def partial_decoding_available() -> bool:
    """Whether chunks can be partly decompressed (see :meth:`Codec.decode_span`)."""
    return _blosc2_getitem() is not None


def _blosc_typesize(typesize: int) -> int:
    return typesize if 1 <= typesize <= _MAX_TYPESIZE else 1


DEFAULT_CODEC = Codec()

# Large str/bytes scalars are kept zstd-compressed out of the queryable column.
_PAYLOAD_LEVEL = 3
MAX_PAYLOAD_BYTES = 2**31


def compress_payload(data: bytes) -> bytes:
    """Compress a large str/bytes payload (zstd frame with its content size)."""
    return zstandard.ZstdCompressor(level=_PAYLOAD_LEVEL, write_content_size=True).compress(data)


def decompress_payload(frame: bytes) -> bytes:
    """Decompress a payload frame, refusing frames without a declared, bounded size."""
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise CorruptionError(f"malformed compressed payload: {exc}") from None
    size = params.content_size
    if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR) or size > MAX_PAYLOAD_BYTES:
        raise CorruptionError(f"compressed payload declares an invalid size ({size})")
    try:
        out = zstandard.ZstdDecompressor().decompress(frame, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CorruptionError(f"compressed payload does not decompress: {exc}") from None
    if len(out) != size:
        raise CorruptionError("compressed payload is shorter than it declares")
    return out
