"""tensordb.diff: a stored tree equals what was stored; a change is found at its path and nowhere else."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import trees

import tensordb
from tensordb.diff import Difference, diff


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=trees(max_leaves=8))
def test_a_stored_tree_has_no_difference_with_its_value_or_its_copy(value: Any) -> None:
    with tempfile.TemporaryDirectory() as folder, tensordb.open(Path(folder) / "d.tdb") as db:
        db["a"] = value
        db["b"] = db["a"]
        assert db.diff("a", "b") == []
        assert diff(db["a"], value) == []  # a handle against the plain value it stores


@settings(max_examples=30, deadline=None)
@given(key=st.sampled_from(["x", "y/z", "~t"]), old=st.integers(), new=st.integers())
def test_a_changed_scalar_is_reported_at_its_escaped_path(key: str, old: int, new: int) -> None:
    got = diff({"keep": 1, key: old}, {"keep": 1, key: new})
    path = "/" + key.replace("~", "~0").replace("/", "~1")
    assert got == ([] if old == new else [Difference(path, "changed", f"int {old!r}", f"int {new!r}")])


@pytest.mark.parametrize(("a", "b", "expected"), [
    (1, 1.0, ["~ (root): int 1 -> float 1.0"]),
    (True, 1, ["~ (root): bool True -> int 1"]),
    (float("nan"), float("nan"), []),
    (0.0, -0.0, ["~ (root): float 0.0 -> float -0.0"]),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, ["+ /a/2: int 3"]),
    ({"a": 1, "b": 2}, {"b": 2}, ["- /a: int 1"]),
    ({"a": {"b": 1}}, {"a": [1]}, ["~ /a: dict (1 items) -> list (1 items)"]),
    (np.zeros(3), np.zeros(4), ["~ (root): array (3,) float64 -> array (4,) float64"]),
    (np.zeros(3, "f4"), np.zeros(3, "f8"), ["~ (root): array (3,) float32 -> array (3,) float64"]),
    (np.float32(1), np.float64(1), ["~ (root): float32 1.0 -> float64 1.0"]),
])
def test_kinds_and_values(a: Any, b: Any, expected: list[str]) -> None:
    assert [str(d) for d in diff(a, b)] == expected


def test_arrays_of_different_chunkings_compare_by_value(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((50, 20))
    with tensordb.open(tmp_path / "c.tdb") as db:
        db["a"] = {}
        db["a"].set("/x", data, chunks=(7, 20))
        db["b"] = {}
        db["b"].set("/x", data, chunks=(50, 3))
        assert db.diff("a", "b") == []
        db["b"]["/x"][49, 19] = 0.5
        assert [(d.path, d.change) for d in db.diff("a/x", "b/x")] == [("", "changed")]


def test_content_keys_decide_without_reading_under_one_codec(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((40, 30))
    with tensordb.open(tmp_path / "k.tdb") as db:
        db["a"] = {"x": data, "same": data}
        db["b"] = {"x": data + 1.0, "same": data}  # equal chunks dedup to the same keys
        before = db.counters.chunks_decoded
        assert [(d.path, d.change) for d in db.diff("a", "b")] == [("/x", "changed")]
        assert db.counters.chunks_decoded == before  # different keys, one codec: different bytes, nothing read
        db["c"] = {}
        db["c"].set("/x", data, codec=tensordb.Codec("zstd", level=1))
        assert db.diff("a/x", "c/x") == []  # another codec: the keys differ, so the chunks are read and compared
        assert db.counters.chunks_decoded > before
