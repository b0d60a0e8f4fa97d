"""Writing Zarr v3 hierarchies (tensordb.interop.zarr.writer): nothing is overwritten or half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb

zarr = pytest.importorskip("zarr")
tzarr = pytest.importorskip("tensordb.interop.zarr")


def test_export_does_not_overwrite_unless_asked(db: tensordb.Database, tmp_path: Path) -> None:
    db["t"] = {"a": np.arange(3)}
    tzarr.export(db["t"], tmp_path / "o.zarr")
    db["t"] = {"b": 1}
    with pytest.raises(FileExistsError, match=r"o\.zarr: already holds a Zarr hierarchy.*overwrite=True"):
        tzarr.export(db["t"], tmp_path / "o.zarr")
    assert list(zarr.open_group(tmp_path / "o.zarr", mode="r").array_keys()) == ["a"]
    tzarr.export(db["t"], tmp_path / "o.zarr", overwrite=True)
    assert zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["b"] == 1


def test_export_refuses_values_tensordb_cannot_store_before_writing(tmp_path: Path) -> None:
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    for value, message in (({"x": np.arange(3), "a": [1, {1, 2}]}, r"/a/1: values of type set cannot be stored"),
                           ({"x": np.arange(3), "a": {1: 2}}, r"/a: dict keys must be str"),
                           ({"x": np.arange(3), "o": np.array([None])}, r"/o: arrays of dtype object"),
                           (cyclic, r"/a/0: the value contains itself")):
        with pytest.raises(TypeError, match=message):
            tzarr.export(value, tmp_path / "never.zarr")
        assert not (tmp_path / "never.zarr").exists()
