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
# Blosc2 "format" compressor codes in the flags byte (LZ4HC writes LZ4's).
_FORMAT_CODES = {"blosclz": 0, "lz4": 1, "lz4hc": 1, "zlib": 3, "zstd": 4}
# The Blosc2 chunk header we write: 32 bytes, the "extended" Blosc2 layout.
_HEADER_BYTES = 32
_BLOSC_FORMATS = range(3, 6)  # Blosc2 chunk format versions with that layout
_EXTENDED = 0x05  # flags bits 0 and 2 both set: an extended (Blosc2) header
_MEMCPYED = 0x02
_ZERO_CHUNK = 0x10  # Blosc2 "special value" bits 4-6 = 1: a run of zeros
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
            raise CorruptionError(f"malformed codec description {str(d)[:80]!r}")
        try:
            return cls(d["name"], d["level"], d["shuffle"])
        except (ValueError, TypeError) as exc:  # TypeError: an unhashable name or shuffle
            raise CorruptionError(f"invalid codec description: {exc}") from None

    @classmethod
    def from_json(cls, text: object) -> Codec:
        if not isinstance(text, str) or len(text) > 256:
            raise CorruptionError(f"malformed codec description {str(text)[:80]!r}")
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, RecursionError):  # JSONDecodeError, too many digits, nesting
            raise CorruptionError(f"malformed codec description {text[:80]!r}") from None

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

    def check_header(self, stored: bytes | memoryview, expected_size: int) -> None:
        """Refuse a Blosc2 header this codec would not have written, before Blosc2 reads it.

        Beyond the sizes (a header declaring more bytes than expected is a
        decompression bomb), the compressor and filter ids must be this
        codec's: Blosc2 loads plugins for ids it does not know, and a header
        naming one must never get that far. Special chunks other than "all
        zeros" (NaN, repeated value, uninitialised) are never written by
        tensordb and are refused.
        """
        if len(stored) < _HEADER_BYTES:
            raise CorruptionError(f"compressed chunk too short ({len(stored)} bytes)")
        head = bytes(stored[:_HEADER_BYTES])
        version, flags = head[0], head[2]
        nbytes = int.from_bytes(head[4:8], "little")
        blocksize = int.from_bytes(head[8:12], "little")
        cbytes = int.from_bytes(head[12:16], "little")
        if nbytes != expected_size or cbytes != len(stored):
            raise CorruptionError(
                f"compressed chunk header says {nbytes} bytes from {cbytes}, "
                f"expected {expected_size} bytes from {len(stored)}"
            )
        if version not in _BLOSC_FORMATS or flags & _EXTENDED != _EXTENDED:
            raise CorruptionError(
                f"compressed chunk has an unknown Blosc2 header (version {version}, flags {flags:#x})"
            )
        if not 1 <= blocksize <= max(nbytes, 1):
            raise CorruptionError(f"compressed chunk header declares an invalid block size {blocksize}")
        codec_id, format_code = head[22], flags >> 5
        if codec_id != _CODECS[self.name].value or format_code not in (_FORMAT_CODES[self.name], 0) or (
            format_code != _FORMAT_CODES[self.name] and not flags & _MEMCPYED
        ):
            raise CorruptionError(
                f"compressed chunk names compressor {codec_id} (format {format_code}); the array uses {self.name}"
            )
        filters = tuple(head[16:22])
        if filters != (_SHUFFLES[self.shuffle].value, 0, 0, 0, 0, 0):
            raise CorruptionError(
                f"compressed chunk names filters {list(filters)}; the array uses shuffle {self.shuffle!r}"
            )
        if any(head[23:31]) or head[31] not in (0, _ZERO_CHUNK):
            raise CorruptionError("compressed chunk header holds options tensordb never writes")

    def decode(self, stored: bytes | memoryview, expected_size: int, out: Any = None) -> Any:
        """Decompress one chunk into ``out`` (or a new bytearray), refusing a header that disagrees.

        The declared sizes are checked *before* any allocation, so a damaged or
        hostile buffer can never make us allocate more than ``expected_size``.
        """
        self.check_header(stored, expected_size)
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
        self.check_header(stored, expected_size)
        getitem = _blosc2_getitem()
        typesize, blocksize = stored[3], int.from_bytes(stored[8:12], "little")  # validated just above
        first = start // blocksize * blocksize
        last = min(expected_size, -(-stop // blocksize) * blocksize)
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
    """Decompress a payload frame, refusing frames without a declared, bounded size.

    The output grows with the bytes really decompressed, never with the size
    the frame declares, so a tiny frame that lies cannot make us allocate.
    """
    if not isinstance(frame, bytes):
        raise CorruptionError(f"compressed payload is {type(frame).__name__}, not bytes")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise CorruptionError(f"malformed compressed payload: {exc}") from None
    size = params.content_size
    if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR) or size > MAX_PAYLOAD_BYTES:
        raise CorruptionError(f"compressed payload declares an invalid size ({size})")
    if params.dict_id:
        raise CorruptionError("compressed payload needs a dictionary (tensordb never uses one)")
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor(max_window_size=_PAYLOAD_WINDOW).stream_reader(frame) as reader:
            while len(out) <= size:
                piece = reader.read(min(_PAYLOAD_PIECE, size + 1 - len(out)))
                if not piece:
                    break
                out += piece
    except zstandard.ZstdError as exc:
        raise CorruptionError(f"compressed payload does not decompress: {exc}") from None
    if len(out) != size:
        raise CorruptionError(f"compressed payload holds {len(out)} bytes where it declares {size}")
    return bytes(out)


_PAYLOAD_PIECE = 1 << 20
# Frames we write (level 3) use a window of at most 2 MiB; a frame may not ask
# the decoder for a larger buffer than this.
_PAYLOAD_WINDOW = 1 << 23
