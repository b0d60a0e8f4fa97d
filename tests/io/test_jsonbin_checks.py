"""Every problem of an untrusted JSON+binref file is found before anything is written (tensordb.io.jsonbin.checks)."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonbin_helpers import (
    MiB,
    assert_same,
    bad_array,
    case_folder,
    snapshot,
    write_doc,
)

import tensordb
from tensordb.io.jsonbin import import_

REJECTIONS: list[tuple[str, Any, str]] = [
    ("dotdot", bad_array(data={"buffer": "../outside.bin:0"}), "'..'"),
    ("dotdot-nested", bad_array(data={"buffer": "sub/../../outside.bin:0"}), "'..'"),
    ("backslash-dotdot", bad_array(data={"buffer": "..\\outside.bin:0"}), "'..'"),
    ("absolute", bad_array(data={"buffer": "{outside}:0"}), "absolute"),
    ("symlink-outside", bad_array(data={"buffer": "link.bin:0"}), "outside the JSON file's folder"),
    ("folder-itself", bad_array(data={"buffer": ".:0"}), "outside the JSON file's folder"),
    ("directory", bad_array(data={"buffer": "sub:0"}), "not a regular file"),
    ("missing-file", bad_array(data={"buffer": "nope.bin:0"}), "'nope.bin' does not exist"),
    ("no-offset", bad_array(data={"buffer": "data.bin"}), "malformed binref"),
    ("empty-offset", bad_array(data={"buffer": "data.bin:"}), "is not a non-negative integer"),
    ("text-offset", bad_array(data={"buffer": "data.bin:abc"}), "is not a non-negative integer"),
    ("negative-offset", bad_array(data={"buffer": "data.bin:-4"}), "is not a non-negative integer"),
    ("float-offset", bad_array(data={"buffer": "data.bin:1.5"}), "is not a non-negative integer"),
    ("past-end", bad_array(data={"buffer": "data.bin:999999"}),
     "binref offset 999999 is past the end of data.bin (256 bytes)"),
    ("at-end", bad_array(data={"buffer": "data.bin:256"}), "past the end of data.bin"),
    ("too-short", bad_array(data={"buffer": "data.bin:250"}), "ends before the array does"),
    ("too-short-shape", bad_array(shape=[65]), "ends before the array does"),
    ("bad-base64", bad_array(data={"buffer": "!!!not base64!!!", "encoding": "base64"}), "invalid base64"),
    ("base64-whitespace", bad_array(data={"buffer": "AAAA\nAAAA", "encoding": "base64"}), "invalid base64"),
    ("base64-non-ascii", bad_array(data={"buffer": "AAAA\u00e9AAA", "encoding": "base64"}), "invalid base64"),
    ("base64-length", bad_array(data={"buffer": base64.b64encode(bytes(12)).decode(), "encoding": "base64"}),
     "decodes to 12 bytes, but shape [4] of int32 needs 16"),
    ("unknown-dtype", bad_array(dtype="float33"), "unknown dtype 'float33'"),
    ("object-dtype", bad_array(dtype="O"), "object dtype"),
    ("object-dtype-name", bad_array(dtype="object"), "object dtype"),
    ("void-dtype", bad_array(dtype="V16"), "not supported"),
    ("structured-dtype", bad_array(dtype="f4,i4"), "structured"),
    ("subarray-dtype", bad_array(dtype="(2,)i4"), "structured or subarray"),
    ("unsized-dtype", bad_array(dtype="S"), "has no size"),
    ("unsized-unicode", bad_array(dtype="U0"), "has no size"),
    ("deprecated-alias", bad_array(dtype="a4"), "unknown dtype"),
    ("non-string-dtype", bad_array(dtype=4), "dtype must be a string"),
    ("list-dtype", bad_array(dtype=[["a", "f4"]]), "dtype must be a string"),
    ("big-endian-dtype", bad_array(dtype=">i4"), "big-endian"),
    ("negative-shape", bad_array(shape=[-4]), "shape must be a list of ints >= 0"),
    ("float-shape", bad_array(shape=[4.0]), "shape must be a list of ints >= 0"),
    ("bool-shape", bad_array(shape=[True]), "shape must be a list of ints >= 0"),
    ("nested-shape", bad_array(shape=[[4]]), "shape must be a list of ints >= 0"),
    ("scalar-shape", bad_array(shape=4), "shape must be a list of ints >= 0"),
    ("huge-shape", bad_array(shape=[10**12, 10**12]), "more than the limit"),
    ("huge-dim", bad_array(shape=[0, 10**30]), "larger than"),
    ("unknown-encoding", bad_array(data={"encoding": "hex"}), "unknown encoding 'hex'"),
    ("missing-data", {"object_type": "array", "shape": [1], "dtype": "i4"}, "without 'data'"),
    ("extra-key", bad_array(name="x"), "unexpected keys 'name'"),
    ("data-not-object", bad_array(data=None), "'data' must be an object"),
    ("non-string-buffer", bad_array(data={"buffer": 12}), "buffer must be a string"),
]


@pytest.mark.parametrize(("case", "bad", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejected_arrays_write_nothing(tmp_path: Path, case: str, bad: Any, message: str) -> None:
    folder = case_folder(tmp_path)
    path = folder / "bad.json"
    write_doc(path, bad, tmp_path / "outside.bin")
    with tensordb.open(tmp_path / "a.tdb") as db:
        db["bad"] = {"old": np.ones(3)}  # an existing tree of the same name survives, even with replace
        db["other"] = [1, 2]
        before = snapshot(db)
        tracemalloc.start()
        try:
            with pytest.raises(tensordb.FormatError) as info:
                import_(db, None, path, replace=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        text = str(info.value)
        assert str(path) in text and "/in a~1b/1/bad" in text and message in text, text
        assert peak < 8 * MiB  # nothing big was allocated (huge shapes are refused up front)
        assert snapshot(db) == before
        assert_same(db["bad"].load(), {"old": np.ones(3)})


def test_binref_in_a_subfolder_is_allowed(tmp_path: Path) -> None:
    folder = case_folder(tmp_path)
    path = folder / "good.json"
    write_doc(path, bad_array(data={"buffer": "sub/data.bin:4"}), tmp_path / "outside.bin")
    with tensordb.open(tmp_path / "a.tdb") as db:
        import_(db, None, path)
        np.testing.assert_array_equal(db["good"]["/in a~1b/1/bad"][...], np.arange(1, 5, dtype="i4"))
