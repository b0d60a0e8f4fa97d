"""Tests of tensordb.arrays.indexing: orthogonal selections over chunk grids."""

from __future__ import annotations

import math
import os
import sys
from itertools import product
from types import FrameType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    AxisSelector,
    OrthogonalKey,
    expected_equals_numpy,
    orthogonal_keys,
    orthogonal_reference_get,
    orthogonal_reference_set,
)

import tensordb
from tensordb.arrays.indexing import (
    ChunkProjection,
    Selection,
    chunk_region,
    chunk_valid_sel,
    grid_shape,
    normalize_chunks,
    orthogonal_get,
    orthogonal_set,
)

SENTINEL = -1
MAX_ELEMENTS = 1500  # keeps the number of chunks (and the test time) bounded

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn) -> tuple[tuple[int, ...], OrthogonalKey]:
    """A chunk shape and a key (from the shared orthogonal key strategy) for a small array."""
    ndim = draw(st.integers(0, 4))
    shape: list[int] = []
    for _ in range(ndim):
        # Each dim stays in 0..12, capped so the whole array stays small.
        cap = min(12, MAX_ELEMENTS // max(1, math.prod(shape)))
        shape.append(draw(st.integers(0, cap)))
    chunks = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    return chunks, draw(orthogonal_keys(tuple(shape)))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def split_chunks(a: np.ndarray, chunks: tuple[int, ...]) -> dict[tuple[int, ...], np.ndarray]:
    """Store ``a`` as full, sentinel-padded chunks."""
    store = {}
    for coords in np.ndindex(*grid_shape(a.shape, chunks)):
        chunk = np.full(chunks, SENTINEL, dtype=a.dtype)
        chunk[chunk_valid_sel(coords, a.shape, chunks)] = a[chunk_region(coords, a.shape, chunks)]
        store[coords] = chunk
    return store


def assemble(
    store: dict[tuple[int, ...], np.ndarray], shape: tuple[int, ...], chunks: tuple[int, ...]
) -> np.ndarray:
    a = np.empty(shape, dtype=np.int64)
    for coords, chunk in store.items():
        a[chunk_region(coords, shape, chunks)] = chunk[chunk_valid_sel(coords, shape, chunks)]
    return a


def read(sel: Selection, store: dict[tuple[int, ...], np.ndarray]) -> Any:
    out = np.full(sel.out_shape, -2, dtype=np.int64)
    hits = np.zeros(sel.out_shape, dtype=np.int64)
    for p in sel.projections():
        orthogonal_set(out, p.out_sel, orthogonal_get(store[p.coords], p.chunk_sel))
        orthogonal_set(hits, p.out_sel, orthogonal_get(hits, p.out_sel) + 1)
    assert (hits == 1).all(), "every output element must be written exactly once"
    result: Any = out.reshape(sel.final_shape)
    if sel.is_scalar:
        result = result[()]
    return result


def check_projection_structure(
    sel: Selection, case: OrthogonalKey, chunks: tuple[int, ...], projs: list[ChunkProjection]
) -> None:
    ndim = len(case.shape)
    coords = [p.coords for p in projs]
    assert coords == sorted(coords), "projections must come in C order of coords"
    assert len(set(coords)) == len(coords)
    touched = [sorted({int(i) // c for i in ax.positions}) for ax, c in zip(case.axes, chunks)]
    assert coords == list(product(*touched))
    selected = [set(ax.positions.tolist()) for ax in case.axes]
    for p in projs:
        assert len(p.chunk_sel) == ndim
        assert len(p.out_sel) == len(sel.out_shape)
        for s in p.chunk_sel:
            assert isinstance(s, (int, slice, np.ndarray))
            if isinstance(s, np.ndarray):
                assert s.ndim == 1 and s.dtype == np.intp
        for s in p.out_sel:
            assert isinstance(s, (slice, np.ndarray))
        region = chunk_region(p.coords, case.shape, chunks)
        full = all(set(range(r.start, r.stop)) <= sel_ax for r, sel_ax in zip(region, selected))
        assert p.complete == full, (p, region)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@settings(max_examples=10 * settings.default.max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_read_matches_numpy(chunks_case: tuple[tuple[int, ...], OrthogonalKey]) -> None:
    chunks, case = chunks_case
    a = np.arange(math.prod(case.shape), dtype=np.int64).reshape(case.shape)
    sel = Selection(case.key, case.shape, chunks)
    expected = orthogonal_reference_get(a, case)

    assert sel.shape == case.shape
    assert sel.final_shape == np.shape(expected) == case.final_shape
    assert sel.out_shape == tuple(len(ax.positions) for ax in case.axes if ax.kind != "int")
    assert math.prod(sel.out_shape) == math.prod(sel.final_shape)
    assert sel.is_scalar == case.is_scalar

    projs = list(sel.projections())
    assert sel.nchunks() == len(projs)
    if math.prod(sel.out_shape) == 0:
        assert projs == []
    check_projection_structure(sel, case, chunks, projs)

    got = read(sel, split_chunks(a, chunks))
    assert np.shape(got) == np.shape(expected)
    assert isinstance(got, np.generic) == isinstance(expected, np.generic)
    np.testing.assert_array_equal(got, expected)

    if expected_equals_numpy(case):
        plain = a[case.key]
        np.testing.assert_array_equal(got, plain)
        assert np.shape(got) == np.shape(plain)
        assert sel.is_scalar == isinstance(plain, np.generic)
        assert isinstance(got, np.generic) == isinstance(plain, np.generic)


@settings(max_examples=6 * settings.default.max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.booleans())
def test_write_matches_numpy(chunks_case: tuple[tuple[int, ...], OrthogonalKey], scalar_value: bool) -> None:
    chunks, case = chunks_case
    a = np.arange(math.prod(case.shape), dtype=np.int64).reshape(case.shape)
    sel = Selection(case.key, case.shape, chunks)
    assert sel.final_shape == case.final_shape
    v: Any = (
        7777
        if scalar_value
        else 10_000 + np.arange(math.prod(sel.final_shape)).reshape(sel.final_shape)
    )

    # Through the chunks, as the writer in the module docstring does.
    before = split_chunks(a, chunks)
    store = {coords: chunk.copy() for coords, chunk in before.items()}
    value = np.broadcast_to(np.asarray(v, np.int64), sel.final_shape).reshape(sel.out_shape)
    written = set()
    for p in sel.projections():
        if p.complete:
            chunk = np.full(chunks, SENTINEL, dtype=np.int64)  # the old chunk is not read
        else:
            chunk = store[p.coords].copy()
        orthogonal_set(chunk, p.chunk_sel, orthogonal_get(value, p.out_sel))
        store[p.coords] = chunk
        written.add(p.coords)

    # numpy doing the same orthogonal assignment.
    expected = orthogonal_reference_set(a, case, v)

    for coords, chunk in store.items():
        pad = np.ones(chunks, dtype=bool)
        pad[chunk_valid_sel(coords, case.shape, chunks)] = False
        assert (chunk[pad] == SENTINEL).all(), f"padding of chunk {coords} was touched"
    np.testing.assert_array_equal(assemble(store, case.shape, chunks), expected)
    # Chunks not written must hold exactly what they held before.
    changed = {
        coords
        for coords, chunk in split_chunks(expected, chunks).items()
        if not np.array_equal(chunk, before[coords])
    }
    assert changed <= written


@st.composite
def arrays_and_selectors(draw: st.DrawFn) -> tuple[np.ndarray, tuple[Any, ...], OrthogonalKey]:
    """Per-chunk style selectors for orthogonal_get/set: one per axis, each a non-negative int,
    a slice with a positive step or an intp array."""
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.integers(0, 5)) for _ in range(ndim))
    axes: list[AxisSelector] = []
    for n in shape:
        kind = draw(st.sampled_from(["slice", "array"] + (["int"] if n else [])))
        if kind == "int":
            i = draw(st.integers(0, n - 1))
            axes.append(AxisSelector("int", i, np.array([i], dtype=np.intp)))
        elif kind == "slice":
            s = slice(draw(st.integers(0, n)), draw(st.integers(0, n)), draw(st.integers(1, 3)))
            axes.append(AxisSelector("slice", s, np.arange(n, dtype=np.intp)[s]))
        else:
            idx = np.array(
                draw(st.lists(st.integers(0, n - 1), max_size=6)) if n else [], dtype=np.intp
            )
            axes.append(AxisSelector("array", idx, idx))
    sel = tuple(ax.raw for ax in axes)
    case = OrthogonalKey(shape, sel, [("axis", 0)] * ndim, axes)
    a = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    return a, sel, case


@settings(max_examples=3 * settings.default.max_examples, deadline=None)
@given(arrays_and_selectors())
def test_orthogonal_get_set(data: tuple[np.ndarray, tuple[Any, ...], OrthogonalKey]) -> None:
    a, sel, case = data
    ref_shape = case.final_shape
    assert ref_shape == tuple(len(ax.positions) for ax in case.axes if ax.kind != "int")
    expected = orthogonal_reference_get(a, case)
    got = orthogonal_get(a, sel)
    assert isinstance(got, np.ndarray)  # 0-d, not a scalar, when every axis is int-indexed
    assert got.shape == ref_shape
    np.testing.assert_array_equal(got, expected)

    value = -1 - np.arange(math.prod(ref_shape), dtype=np.int64).reshape(ref_shape)
    b = a.copy()
    orthogonal_set(b, sel, value)
    np.testing.assert_array_equal(b, orthogonal_reference_set(a, case, value))


# ---------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------


def test_negative_step_maps_to_ascending_chunk_slices() -> None:
    sel = Selection(slice(None, None, -2), (10,), (3,))
    projs = list(sel.projections())
    assert sel.out_shape == (5,)  # elements 9, 7, 5, 3, 1
    assert [p.coords for p in projs] == [(0,), (1,), (2,), (3,)]
    assert [p.chunk_sel for p in projs] == [
        (slice(1, 2),),
        (slice(0, 3, 2),),
        (slice(1, 2),),
        (slice(0, 1),),
    ]
    assert [p.out_sel for p in projs] == [
        (slice(4, 3, -1),),
        (slice(3, 1, -1),),
        (slice(1, 0, -1),),
        (slice(0, None, -1),),
    ]
    assert [p.complete for p in projs] == [False, False, False, True]


def test_multiple_index_arrays_are_orthogonal() -> None:
    a = np.arange(30).reshape(5, 6)
    key = ([4, 0, 4], np.array([True, False, True, False, False, True]))
    sel = Selection(key, a.shape, (2, 4))
    got = read(sel, split_chunks(a, (2, 4)))
    np.testing.assert_array_equal(got, a[np.ix_([4, 0, 4], [0, 2, 5])])
    assert sel.nchunks() == 4


def test_unsorted_index_array_splits_per_chunk() -> None:
    sel = Selection(np.array([7, 1, 6, 0, 7]), (8,), (4,))
    projs = list(sel.projections())
    assert [p.coords for p in projs] == [(0,), (1,)]
    np.testing.assert_array_equal(projs[0].chunk_sel[0], [1, 0])
    np.testing.assert_array_equal(projs[0].out_sel[0], [1, 3])
    np.testing.assert_array_equal(projs[1].chunk_sel[0], [3, 2, 3])
    np.testing.assert_array_equal(projs[1].out_sel[0], [0, 2, 4])
    assert not projs[0].complete and not projs[1].complete


def test_boolean_mask_gives_slices() -> None:
    mask = np.array([True] * 4 + [False, True, True, True])
    projs = list(Selection(mask, (8,), (4,)).projections())
    assert projs[0].chunk_sel == (slice(0, 4),) and projs[0].out_sel == (slice(0, 4),)
    assert projs[0].complete
    assert projs[1].chunk_sel == (slice(1, 4),) and projs[1].out_sel == (slice(4, 7),)
    assert not projs[1].complete


@pytest.mark.parametrize(
    ("key", "final_shape", "is_scalar"),
    [
        ((), (), True),
        (Ellipsis, (), False),
        (None, (1,), False),
        ((None, ..., None), (1, 1), False),
    ],
)
def test_zero_dim(key: Any, final_shape: tuple[int, ...], is_scalar: bool) -> None:
    a = np.array(42, dtype=np.int64)
    sel = Selection(key, (), ())
    assert sel.out_shape == ()
    assert sel.final_shape == final_shape == np.shape(a[key])
    assert sel.is_scalar is is_scalar
    projs = list(sel.projections())
    assert projs == [ChunkProjection((), (), (), True)]
    assert sel.nchunks() == 1
    got = read(sel, {(): a.copy()})
    assert isinstance(got, np.generic) == is_scalar
    np.testing.assert_array_equal(got, a[key])


def test_int_indexing_all_axes_is_scalar_unless_ellipsis() -> None:
    a = np.arange(12).reshape(3, 4)
    assert Selection((1, -1), a.shape, (2, 2)).is_scalar
    assert not Selection((1, -1, ...), a.shape, (2, 2)).is_scalar
    assert Selection((1, -1, ...), a.shape, (2, 2)).final_shape == np.shape(a[1, -1, ...]) == ()
    assert not Selection((1, None, -1), a.shape, (2, 2)).is_scalar


@pytest.mark.parametrize(
    ("shape", "chunks", "key", "nchunks"),
    [
        ((0,), (3,), slice(None), 0),
        ((5, 0), (2, 2), (slice(None), slice(None)), 0),
        ((5, 4), (2, 2), (slice(None), []), 0),
        ((5, 4), (2, 2), (slice(3, 1), 0), 0),
        ((5,), (100,), slice(None), 1),
        ((7, 5), (3, 2), (Ellipsis,), 9),
        ((7, 5), (3, 2), (slice(None, None, 3), 1), 3),
    ],
)
def test_nchunks_examples(
    shape: tuple[int, ...], chunks: tuple[int, ...], key: Any, nchunks: int
) -> None:
    sel = Selection(key, shape, chunks)
    assert sel.nchunks() == nchunks == len(list(sel.projections()))


def lines_run(fn: Any) -> int:
    """How many lines of tensordb's code ``fn()`` executes: work counted, not timed."""
    package = os.path.dirname(tensordb.__file__)
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(package) else None

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def test_the_line_counter_sees_work_proportional_to_the_chunks() -> None:
    small = lines_run(lambda: list(Selection(slice(None), (100,), (10,)).projections()))
    large = lines_run(lambda: list(Selection(slice(None), (1000,), (10,)).projections()))
    assert small > 0 and large > 5 * small


def test_huge_shape_small_slice() -> None:
    def run() -> None:
        sel = Selection(slice(5 * 10**11, 5 * 10**11 + 10), (10**12,), (10**6,))
        projs = list(sel.projections())
        assert sel.nchunks() == 1
        assert projs == [ChunkProjection((500_000,), (slice(0, 10),), (slice(0, 10),), False)]
        assert sel.out_shape == sel.final_shape == (10,)

    assert lines_run(run) < 2_000  # nothing walks the 10**6 chunks the selection does not touch


def test_huge_shape_other_keys() -> None:
    assert lines_run(_huge_shape_other_keys) < 5_000  # chunk counts are arithmetic, projections lazy


def _huge_shape_other_keys() -> None:
    shape, chunks = (10**12,), (10**6,)
    assert Selection(slice(None), shape, chunks).nchunks() == 10**6
    assert Selection(slice(None, None, 3 * 10**6), shape, chunks).nchunks() == 333_334
    assert Selection(slice(None, None, -1), shape, chunks).nchunks() == 10**6
    rev = next(Selection(slice(None, None, -1), shape, chunks).projections())
    assert rev.coords == (0,) and rev.chunk_sel == (slice(0, 10**6),) and rev.complete
    assert rev.out_sel == (slice(10**12 - 1, 10**12 - 10**6 - 1, -1),)
    projs = list(Selection([-1, 0, 5 * 10**11], shape, chunks).projections())
    assert [p.coords for p in projs] == [(0,), (500_000,), (999_999,)]
    (p,) = Selection(-1, shape, chunks).projections()
    assert p.coords == (999_999,) and p.chunk_sel == (10**6 - 1,) and p.out_sel == ()
    big2 = Selection((7, slice(10, 12)), (10**9, 10**9), (1000, 1000))
    assert big2.nchunks() == 1 and big2.out_shape == (2,)


def test_write_with_duplicates_last_wins() -> None:
    shape, chunks = (6,), (4,)
    sel = Selection([5, 1, 5], shape, chunks)
    store = split_chunks(np.zeros(6, dtype=np.int64), chunks)
    value = np.array([10, 20, 30])
    for p in sel.projections():
        orthogonal_set(store[p.coords], p.chunk_sel, orthogonal_get(value, p.out_sel))
    np.testing.assert_array_equal(assemble(store, shape, chunks), [0, 20, 0, 0, 0, 30])


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "key", "match"),
    [
        ((3,), 3, "index 3 is out of bounds for axis 0 with size 3"),
        ((3,), -4, "index -4 is out of bounds for axis 0 with size 3"),
        ((3, 4), (0, 4), "index 4 is out of bounds for axis 1 with size 4"),
        ((3, 4), (0, np.int64(-5)), "index -5 is out of bounds for axis 1 with size 4"),
        ((3,), [0, 3], "index 3 is out of bounds for axis 0 with size 3"),
        ((2, 3), (..., np.array([1, -4])), "index -4 is out of bounds for axis 1 with size 3"),
        ((3,), np.array([5], dtype=np.uint8), "index 5 is out of bounds for axis 0 with size 3"),
        ((0,), 0, "index 0 is out of bounds for axis 0 with size 0"),
        ((3,), (0, 0), "too many indices"),
        ((), 0, "too many indices"),
        ((2, 2), (0, None, 0, 0), "too many indices"),
        ((3, 4), (Ellipsis, Ellipsis), "single ellipsis"),
        ((3,), np.array([True, False]), "boolean index did not match"),
        ((3,), [True, False, True, True], "boolean index did not match"),
        ((3,), 1.0, "valid indices"),
        ((3,), "a", "valid indices"),
        ((3,), object(), "valid indices"),
        ((3,), [0.5], "integer"),
        ((3,), np.array([0.0]), "integer"),
        ((3,), ["a"], "integer"),
        ((3, 3), np.array([[0, 1]]), "1-dimensional"),
        ((3, 3), ([0], [[1]]), "1-dimensional"),
        ((3,), [[0], [1, 2]], "valid indices"),
        ((3,), slice(0.5, 2), "slice indices"),
        ((3,), True, "boolean scalar indices are not supported"),
        ((3,), np.bool_(False), "boolean scalar indices are not supported"),
        ((3,), np.array(True), "boolean scalar indices are not supported"),
        ((3, 3), (0, False), "boolean scalar indices are not supported"),
    ],
)
def test_index_errors(shape: tuple[int, ...], key: Any, match: str) -> None:
    with pytest.raises(IndexError, match=match):
        Selection(key, shape, tuple(2 for _ in shape))


def test_zero_d_int_array_counts_as_int() -> None:
    sel = Selection(np.array(2), (5,), (2,))
    assert sel.is_scalar and sel.out_shape == ()


@pytest.mark.parametrize(
    ("chunks", "shape"),
    [
        ((0,), (3,)),
        ((-1,), (3,)),
        ((2,), (3, 3)),
        ((2, 2), (3,)),
        ((1.5,), (3,)),
        ((True,), (3,)),
        (2, (3,)),
        ("2", (3,)),
    ],
)
def test_normalize_chunks_errors(chunks: Any, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        normalize_chunks(chunks, shape)
    with pytest.raises(ValueError):
        Selection(slice(None), shape, chunks)


def test_normalize_chunks_ok() -> None:
    assert normalize_chunks([np.int64(2), 5], (3, 0)) == (2, 5)
    assert normalize_chunks((), ()) == ()
    assert all(type(c) is int for c in normalize_chunks(np.array([3, 4]), (1, 1)))


# ---------------------------------------------------------------------------
# Grid helpers
# ---------------------------------------------------------------------------


def test_grid_helpers() -> None:
    assert grid_shape((10, 0, 3), (4, 2, 5)) == (3, 0, 1)
    assert grid_shape((), ()) == ()
    assert chunk_region((2, 1), (10, 10), (4, 5)) == (slice(8, 10), slice(5, 10))
    assert chunk_valid_sel((2, 1), (10, 10), (4, 5)) == (slice(0, 2), slice(0, 5))
    assert chunk_region((0,), (3,), (7,)) == (slice(0, 3),)
    assert chunk_valid_sel((0,), (3,), (7,)) == (slice(0, 3),)
    assert chunk_region((), (), ()) == ()
    assert chunk_valid_sel((), (), ()) == ()
    with pytest.raises(IndexError):
        chunk_region((3, 0), (10, 10), (4, 5))
    with pytest.raises(IndexError):
        chunk_valid_sel((0,), (0,), (4,))


def test_zero_slice_step_is_a_value_error() -> None:
    # As in numpy and Python: a zero step is a bad value, not a bad index.
    with pytest.raises(ValueError, match="step cannot be zero"):
        Selection(slice(None, None, 0), (3,), (2,))
