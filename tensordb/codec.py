"""Chunk compression (bytes in, bytes out) and payload compression.

:class:`Codec` is a frozen value object describing how an array's chunks are
compressed with Blosc2. It is stored as JSON in the ``array.codec`` column.

Blosc2 is called through the C library that python-blosc2 ships
(``blosc2/lib/libblosc2.so``), not through the ``blosc2`` Python package:
importing that package costs several times numpy's start-up (it pulls in its
remote-array and HTTP client modules), and every script that reads one value
would pay it. Only raw chunk functions are used (compress, decompress,
getitem): frame helpers may unpickle, and stored bytes are untrusted input.
Where the C library cannot be loaded, the Python package is used instead.

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
import importlib.util
import json
import os
import struct
import threading
from typing import Any

from .errors import CorruptionError
from .frozen import Frozen

__all__ = ["Codec", "DEFAULT_CODEC", "compress_payload", "decompress_payload", "MAX_CHUNK_BYTES",
           "partial_decoding_available"]

# Blosc2's compressor and filter ids (stable parts of its file format).
_CODECS: dict[str, int] = {"blosclz": 0, "lz4": 1, "lz4hc": 2, "zlib": 4, "zstd": 5}
_SHUFFLES: dict[str, int] = {"none": 0, "byte": 1, "bit": 2}
# Blosc2 "format" compressor codes in the flags byte (LZ4HC writes LZ4's).
_FORMAT_CODES = {"blosclz": 0, "lz4": 1, "lz4hc": 1, "zlib": 3, "zstd": 4}
# The Blosc2 chunk header we write: 32 bytes, the "extended" Blosc2 layout.
_HEADER_BYTES = 32
_MAX_OVERHEAD = _HEADER_BYTES  # a chunk never grows by more than its header (BLOSC2_MAX_OVERHEAD)
_BLOSC_FORMATS = range(3, 6)  # Blosc2 chunk format versions with that layout
_EXTENDED = 0x05  # flags bits 0 and 2 both set: an extended (Blosc2) header
_MEMCPYED = 0x02
_ZERO_CHUNK = 0x10  # Blosc2 "special value" bits 4-6 = 1: a run of zeros
# The Blosc2 extended header: version, (lz version), flags, (typesize), nbytes, blocksize, cbytes,
# six filter ids, compressor id, eight option bytes (filter meta, reserved), special-value flags.
_HEADER = struct.Struct("<BxBxIII6sB8sB")
_FILTERS = {name: bytes((code, 0, 0, 0, 0, 0)) for name, code in _SHUFFLES.items()}
_NO_OPTIONS = bytes(8)
# Blosc2 buffers hold less than 2 GiB; keep a margin for its header.
MAX_CHUNK_BYTES = 2**31 - 1024
# Blosc2's typesize is a byte; wider items (big records) are shuffled as bytes.
_MAX_TYPESIZE = 255


class Codec(Frozen):
    """How the chunks of an array are compressed (Blosc2).

    The default, LZ4 level 5 with byte shuffle, was chosen by measurement on
    the arrays of the mesh benchmark and on a large smooth field
    (docs/format.md): reading them back is 2 to 6 times as fast as with bit
    shuffle or zstd, for 4 to 7% more bytes than bit shuffle.

    Parameters
    ----------
    name : {"lz4", "zstd", "lz4hc", "zlib", "blosclz"}
        The Blosc2 compressor.
    level : int
        Compression level, 0 (store) to 9.
    shuffle : {"bit", "byte", "none"}
        The Blosc2 shuffle filter applied before compression.

    Example
    -------
    >>> tensordb.Codec("zstd", level=5, shuffle="bit")
    Codec(name='zstd', level=5, shuffle='bit')
    """

    __slots__ = ("name", "level", "shuffle")
    name: str
    level: int
    shuffle: str

    def __init__(self, name: str = "lz4", level: int = 5, shuffle: str = "byte") -> None:
        if name not in _CODECS:
            raise ValueError(f"unknown codec {name!r}; expected one of {sorted(_CODECS)}")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
            raise ValueError(f"codec level must be an int from 0 to 9, got {level!r}")
        if shuffle not in _SHUFFLES:
            raise ValueError(f"unknown shuffle {shuffle!r}; expected one of {sorted(_SHUFFLES)}")
        self._assign(name, level, shuffle)

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
        # Blosc2 stores buffers this small as they are, yet setting up a
        # compressor costs 20 us: level 0 skips that (the header says how to decode).
        level = self.level if nbytes >= _MIN_COMPRESSIBLE_BYTES else 0
        return _blosc().compress(raw, nbytes, _CODECS[self.name], level, _SHUFFLES[self.shuffle],
                                 _blosc_typesize(typesize), _threads_for(nbytes))

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
        version, flags, nbytes, blocksize, cbytes, filters, codec_id, options, special = _HEADER.unpack_from(stored)
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
        format_code = flags >> 5
        if codec_id != _CODECS[self.name] or format_code not in (_FORMAT_CODES[self.name], 0) or (
            format_code != _FORMAT_CODES[self.name] and not flags & _MEMCPYED
        ):
            raise CorruptionError(
                f"compressed chunk names compressor {codec_id} (format {format_code}); the array uses {self.name}"
            )
        if filters != _FILTERS[self.shuffle]:
            raise CorruptionError(
                f"compressed chunk names filters {list(filters)}; the array uses shuffle {self.shuffle!r}"
            )
        if options != _NO_OPTIONS or special not in (0, _ZERO_CHUNK):
            raise CorruptionError("compressed chunk header holds options tensordb never writes")

    def decode(self, stored: bytes | memoryview, expected_size: int, out: Any = None) -> Any:
        """Decompress one chunk into ``out`` (or a new bytearray), refusing a header that disagrees.

        The declared sizes are checked *before* any allocation, so a damaged or
        hostile buffer can never make us allocate more than ``expected_size``.
        """
        self.check_header(stored, expected_size)
        if out is None:
            out = bytearray(expected_size)
        if stored[2] & _MEMCPYED and not stored[31] and len(stored) == _HEADER_BYTES + expected_size:
            # Blosc2 stored these bytes as they are, after the header (chunks
            # too small or too noisy to compress): copy them without a call into Blosc2.
            _raw_view(out, expected_size)[:] = memoryview(stored)[_HEADER_BYTES:]
        else:
            _blosc().decompress(stored, out, expected_size, _threads_for(expected_size))
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
        blosc = _blosc()
        typesize, blocksize = stored[3], int.from_bytes(stored[8:12], "little")  # validated just above
        first = start // blocksize * blocksize
        last = min(expected_size, -(-stop // blocksize) * blocksize)
        if (not blosc.partial or not 0 <= start < stop <= expected_size or last - first >= expected_size
                or typesize == 0 or first % typesize or (last - first) % typesize):
            return 0, self.decode(stored, expected_size)
        # Whole blocks only: a request of exactly one block's size that starts
        # inside a block comes back wrong from blosc2_getitem (c-blosc2 2.x).
        out = bytearray(last - first)
        blosc.getitem(stored, first // typesize, (last - first) // typesize, out)
        return first, out


# Blosc2 starts a thread pool per call when asked for several threads, which
# costs more than (de)compressing a small chunk: chunks below this size are
# done in the calling thread (many chunks are processed in parallel instead).
_THREADED_CHUNK_BYTES = 4 * 1024 * 1024
_MIN_COMPRESSIBLE_BYTES = 128


def _threads_for(nbytes: int) -> int:
    return min(os.cpu_count() or 1, _MAX_BLOSC_THREADS) if nbytes >= _THREADED_CHUNK_BYTES else 1


_MAX_BLOSC_THREADS = 8


def _blosc_typesize(typesize: int) -> int:
    return typesize if 1 <= typesize <= _MAX_TYPESIZE else 1


class _CLib:
    """Blosc2's raw chunk functions, called through ctypes (ctypes releases the GIL during each call).

    Compression and decompression contexts are kept per thread, since a
    context is not thread-safe and creating one costs more than a small chunk.
    """

    partial = True

    # blosc2_cparams/blosc2_dparams are passed by value; their leading fields
    # have kept these offsets since c-blosc2 2.0. The structs are filled with
    # the library's own defaults first, into buffers larger than either.
    _CP_COMPCODE, _CP_CLEVEL, _CP_TYPESIZE, _CP_NTHREADS, _CP_FILTERS = 0, 2, 8, 12, 32
    _DP_NTHREADS = 0

    class _Params(ctypes.Structure):
        _fields_ = [("raw", ctypes.c_uint64 * 64)]  # 512 bytes: c-blosc2 3.x needs 136

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.blosc2_init()
        p, c_int32, c_void_p = ctypes.POINTER(self._Params), ctypes.c_int32, ctypes.c_void_p
        lib.blosc2_get_blosc2_cparams_defaults.argtypes = [p]
        lib.blosc2_get_blosc2_dparams_defaults.argtypes = [p]
        lib.blosc2_create_cctx.argtypes = [self._Params]
        lib.blosc2_create_dctx.argtypes = [self._Params]
        lib.blosc2_create_cctx.restype = lib.blosc2_create_dctx.restype = c_void_p
        lib.blosc2_compress_ctx.argtypes = [c_void_p, c_void_p, c_int32, c_void_p, c_int32]
        lib.blosc2_decompress_ctx.argtypes = [c_void_p, c_void_p, c_int32, c_void_p, c_int32]
        lib.blosc2_getitem.argtypes = [c_void_p, c_int32, ctypes.c_int, ctypes.c_int, c_void_p, c_int32]
        lib.blosc2_compress_ctx.restype = lib.blosc2_decompress_ctx.restype = ctypes.c_int
        lib.blosc2_getitem.restype = ctypes.c_int
        self._local = threading.local()

    def _cctx(self, key: tuple[int, int, int, int, int]) -> int:
        contexts: dict[Any, int] = self._local.__dict__.setdefault("cctx", {})
        ctx = contexts.get(key)
        if ctx is None:
            compcode, level, shuffle, typesize, nthreads = key
            params = self._Params()
            self._lib.blosc2_get_blosc2_cparams_defaults(ctypes.byref(params))
            raw = (ctypes.c_uint8 * ctypes.sizeof(params)).from_buffer(params)
            raw[self._CP_COMPCODE], raw[self._CP_CLEVEL] = compcode, level
            ctypes.c_int32.from_buffer(params, self._CP_TYPESIZE).value = typesize
            ctypes.c_int16.from_buffer(params, self._CP_NTHREADS).value = nthreads
            raw[self._CP_FILTERS:self._CP_FILTERS + 6] = [shuffle, 0, 0, 0, 0, 0]
            ctx = contexts[key] = self._lib.blosc2_create_cctx(params)
            if not ctx:
                raise MemoryError("Blosc2 could not create a compression context")
        return ctx

    def _dctx(self, nthreads: int) -> int:
        try:  # the common case first: a context this thread made already
            return self._local.dctx[nthreads]  # type: ignore[no-any-return]
        except (AttributeError, KeyError):
            return self._new_dctx(nthreads)

    def _new_dctx(self, nthreads: int) -> int:
        contexts: dict[int, int] = self._local.__dict__.setdefault("dctx", {})
        ctx = contexts.get(nthreads)
        if ctx is None:
            params = self._Params()
            self._lib.blosc2_get_blosc2_dparams_defaults(ctypes.byref(params))
            ctypes.c_int16.from_buffer(params, self._DP_NTHREADS).value = nthreads
            ctx = contexts[nthreads] = self._lib.blosc2_create_dctx(params)
            if not ctx:
                raise MemoryError("Blosc2 could not create a decompression context")
        return ctx

    def compress(self, raw: Any, nbytes: int, compcode: int, level: int, shuffle: int, typesize: int,
                 nthreads: int) -> bytes:
        src = _address(raw, nbytes)
        out = bytearray(nbytes + _MAX_OVERHEAD)
        done = self._lib.blosc2_compress_ctx(self._cctx((compcode, level, shuffle, typesize, nthreads)),
                                             src, nbytes, _address(out, len(out), writable=True), len(out))
        if done <= 0:
            raise ValueError(f"Blosc2 could not compress a chunk of {nbytes} bytes (error {done})")
        del out[done:]
        return bytes(out)

    def decompress(self, stored: Any, out: Any, expected_size: int, nthreads: int) -> None:
        size = len(stored)
        done = self._lib.blosc2_decompress_ctx(self._dctx(nthreads), _address(stored, size), size,
                                               _address(out, expected_size, writable=True), expected_size)
        if done != expected_size:
            raise CorruptionError(f"chunk does not decompress (Blosc2 returned {done})")

    def getitem(self, stored: Any, start: int, nitems: int, out: bytearray) -> None:
        size = len(stored)
        done = self._lib.blosc2_getitem(_address(stored, size), size, start, nitems,
                                        _address(out, len(out), writable=True), len(out))
        if done != len(out):
            raise CorruptionError(f"chunk does not decompress (blosc2_getitem returned {done})")


class _PyBlosc2:
    """The python-blosc2 package, where its C library cannot be loaded (no partial decoding then)."""

    partial = False

    def __init__(self) -> None:
        import blosc2

        blosc2.set_releasegil(True)
        self._blosc2 = blosc2

    def compress(self, raw: Any, nbytes: int, compcode: int, level: int, shuffle: int, typesize: int,
                 nthreads: int) -> bytes:
        b = self._blosc2
        return b.compress2(raw, codec=b.Codec(compcode), clevel=level, filters=[b.Filter(shuffle)],  # type: ignore[no-any-return]
                           filters_meta=[0], typesize=typesize, nthreads=nthreads)

    def decompress(self, stored: Any, out: Any, expected_size: int, nthreads: int) -> None:
        try:
            self._blosc2.decompress2(stored, dst=out, nthreads=nthreads)
        except Exception as exc:
            raise CorruptionError(f"chunk does not decompress: {exc}") from None

    def getitem(self, stored: Any, start: int, nitems: int, out: bytearray) -> None:
        """Items ``[start, start + nitems)`` of a chunk, from a whole decode (no partial decoding here)."""
        typesize, nbytes = stored[3], int.from_bytes(stored[4:8], "little")  # the header was checked
        whole = bytearray(nbytes)
        self.decompress(stored, whole, nbytes, 1)
        out[:] = whole[start * typesize: start * typesize + len(out)]


def _checked_view(buffer: Any, nbytes: int, writable: bool) -> memoryview:
    """A view of a buffer that holds ``nbytes`` contiguous bytes (and can be written, if asked)."""
    view = memoryview(buffer)
    if view.nbytes < nbytes or not view.c_contiguous:
        raise ValueError("Blosc2 needs a contiguous buffer of the declared size")
    if writable and view.readonly:
        raise ValueError("Blosc2 output buffer is read-only: it must be writable")
    return view


def _raw_view(buffer: Any, nbytes: int) -> memoryview:
    """The first ``nbytes`` of a writable contiguous buffer, as bytes."""
    return _checked_view(buffer, nbytes, writable=True).cast("B")[:nbytes]


def _address(buffer: Any, nbytes: int, writable: bool = False) -> int | bytes:
    """A pointer to a buffer's bytes for ctypes, without copying where the buffer allows it."""
    if isinstance(buffer, bytes):
        return buffer  # ctypes passes a bytes object's own storage
    view = _checked_view(buffer, nbytes, writable)
    if view.readonly:
        return view.tobytes() if nbytes else b""
    if nbytes == 0:
        return b""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # checked through the view just above


@functools.cache
def _blosc() -> _CLib | _PyBlosc2:
    """Blosc2 through its C library where python-blosc2 ships one, else through the Python package."""
    spec = importlib.util.find_spec("blosc2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for pattern in ("libblosc2.so*", "libblosc2*.dylib", "blosc2*.dll", "libblosc2*.dll"):
            for candidate in sorted(glob.glob(os.path.join(folder, "lib", pattern))):
                try:
                    lib = ctypes.CDLL(candidate)
                    if lib.blosc2_get_blosc2_cparams_defaults and lib.blosc2_getitem:
                        return _CLib(lib)
                except (OSError, AttributeError):
                    continue
    return _PyBlosc2()


def partial_decoding_available() -> bool:
    """Whether chunks can be partly decompressed (see :meth:`Codec.decode_span`)."""
    return _blosc().partial


DEFAULT_CODEC = Codec()

# Large str/bytes scalars are kept zstd-compressed out of the queryable column.
_PAYLOAD_LEVEL = 3
MAX_PAYLOAD_BYTES = 2**31


def compress_payload(data: bytes) -> bytes:
    """Compress a large str/bytes payload (zstd frame with its content size)."""
    import zstandard  # deferred with the other payload code: 3 ms of every start-up otherwise

    return zstandard.ZstdCompressor(level=_PAYLOAD_LEVEL, write_content_size=True).compress(data)


def decompress_payload(frame: bytes) -> bytes:
    """Decompress a payload frame, refusing frames without a declared, bounded size.

    The output grows with the bytes really decompressed, never with the size
    the frame declares, so a tiny frame that lies cannot make us allocate.
    """
    import zstandard  # deferred (see compress_payload)

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
