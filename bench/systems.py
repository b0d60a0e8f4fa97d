"""What the code of every system under test shares: tensordb's name, its files, syncing, clearing.

The systems' code runs in fresh worker processes (``python -m bench.run_op``) whose
wall time is the figure, so this module imports only what Python's start-up has
already imported: numpy, tensordb and the peers' libraries are imported where an
operation uses them, and each operation pays only for its own system's imports.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

#: The system whose ratio against the best peer each table reports.
TDB = "tensordb"


def sync() -> None:
    """Flush every dirty page to disk: the final sync of every write operation, for all systems alike."""
    os.sync()


def fresh(path: Path) -> None:
    """Remove a file or folder if it exists (so that a write starts from nothing)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def tdb_files(db_path: Path) -> list[Path]:
    """A tensordb database's files: the SQLite file, its -wal/-shm and the pack folder."""
    return [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), Path(f"{db_path}-packs")]


def zarr_put(group: Any, value: dict[str, Any], **array_options: Any) -> None:
    """Write nested dicts as Zarr groups: arrays as one-chunk arrays, everything else as group attributes."""
    import numpy as np

    attrs = {}
    for key, v in value.items():
        if isinstance(v, dict):
            zarr_put(group.create_group(key), v, **array_options)
        elif isinstance(v, np.ndarray):
            group.create_array(key, data=v, chunks=v.shape, **array_options)
        else:
            attrs[key] = v
    if attrs:
        group.attrs.update(attrs)


# -- the codec of the peers that compress like tensordb's defaults ----------------------------

CODEC_FILE = "codec.json"
_H5_SHUFFLES = {"none": "NOSHUFFLE", "byte": "SHUFFLE", "bit": "BITSHUFFLE"}
_ZARR_SHUFFLES: dict[str, Any] = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle"}


def save_default_codec(work: Path) -> None:
    """Record tensordb's default codec in ``work``, for the peers that compress as tensordb does by default
    (read from the file, so that a peer's fresh process does not import tensordb to learn it)."""
    import json

    from tensordb.codec import DEFAULT_CODEC

    (work / CODEC_FILE).write_text(json.dumps(DEFAULT_CODEC.to_dict()))


def default_codec(work: Path) -> dict[str, Any]:
    """``{"name", "level", "shuffle"}`` as :func:`save_default_codec` recorded it."""
    import json

    codec: dict[str, Any] = json.loads((work / CODEC_FILE).read_text())
    return codec


def h5py_blosc(work: Path) -> Any:
    """hdf5plugin's Blosc filter options for tensordb's default codec (``**`` them into ``create_dataset``)."""
    import hdf5plugin

    codec = default_codec(work)
    shuffle = getattr(hdf5plugin.Blosc, _H5_SHUFFLES[codec["shuffle"]])
    return hdf5plugin.Blosc(cname=codec["name"], clevel=codec["level"], shuffle=shuffle)


def zarr_blosc(work: Path) -> Any:
    """Zarr v3's Blosc codec for tensordb's default codec."""
    from zarr.codecs import BloscCodec

    codec = default_codec(work)
    return BloscCodec(cname=codec["name"], clevel=codec["level"], shuffle=_ZARR_SHUFFLES[codec["shuffle"]])
