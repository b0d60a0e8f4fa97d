"""The size limits tensordb enforces, public so that importers check the same ones.

Every way in (assignment, ``create_array``, the file formats, Zarr import)
refuses the same shapes and chunks: a file that claims more than tensordb
would store is refused before anything is allocated, and what tensordb
stores can always be exported and imported back.

Example
-------
>>> from tensordb import limits
>>> limits.MAX_NDIM
32
>>> limits.MAX_ARRAY_BYTES == 2**60
True
"""

from __future__ import annotations

from .arrays.dtypes import MAX_ITEMSIZE
from .arrays.grid import BLOCK_BYTES, MAX_NDIM
from .arrays.grid import MAX_NBYTES as MAX_ARRAY_BYTES
from .codec import MAX_CHUNK_BYTES

__all__ = ["MAX_ARRAY_BYTES", "MAX_CHUNK_BYTES", "MAX_ITEMSIZE", "MAX_NDIM", "BLOCK_BYTES"]

# MAX_ARRAY_BYTES: no array may claim more logical bytes than this (a guard against hostile shapes).
# MAX_CHUNK_BYTES: no chunk may hold more raw bytes than this (Blosc2 buffers stay under 2 GiB).
# MAX_ITEMSIZE: no dtype may have larger items than this.
# MAX_NDIM: no array may have more dimensions than this.
# BLOCK_BYTES: streaming (``tensordb.iter_blocks``, imports, exports) holds boxes of about this many bytes.
