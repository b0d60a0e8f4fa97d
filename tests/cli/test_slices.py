"""--slice parsing and show --stats, compared with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli.helpers import NOISY, POINTS, ok, table
from tensordb.cli.slices import parse_slice


def test_parse_slice() -> None:
    assert parse_slice("0:10,:") == (slice(0, 10), slice(None))
    assert parse_slice(" 5 , ::-2, ... ") == (5, slice(None, None, -2), Ellipsis)
    assert parse_slice("[1:-1:3]") == (slice(1, -1, 3),)
    assert parse_slice("") == ()
    assert parse_slice("[0,5,7]") == ([0, 5, 7],)  # a list of indices on axis 0, not three axes
    assert parse_slice("[0, -1], 1:") == ([0, -1], slice(1, None))
    assert parse_slice(":, [2]") == (slice(None), [2])
    for bad in ("1+1", "0:10:2:1", "__import__('os')", "a:b", "1,,2", "...,...", "::0", "1.5", "None", "[[1]]",
                "[1, 2", "[1:2], 3", "[a]"):
        with pytest.raises(ValueError, match="bad slice"):
            parse_slice(bad)


def _stats(output: str) -> dict[str, float | None]:
    return {k: float(v) if v else None for k, v in table(output)}


@pytest.mark.parametrize("text", ["", "0:10,:", "5:90:7, 1:", "::-3", "...,1", "-1", "90:3:-4, 2", "10:3",
                                  "17:18", "3:", "::20", "::-17, 0", "-50:-1:33"])
def test_show_stats_match_numpy_chunk_by_chunk(sample: Path, text: str) -> None:
    key = parse_slice(text)
    expected = POINTS[key] if key else POINTS
    args = ["show", sample, "s1/data/points", "--stats"] + (["--slice", text] if text else [])
    got = _stats(ok(*args).stdout)
    assert got["count"] == expected.size and got["nan"] == 0
    if expected.size:
        assert got["min"] == expected.min() and got["max"] == expected.max()
        assert got["mean"] == pytest.approx(expected.mean(dtype="f8"), rel=1e-5)
        assert got["std"] == pytest.approx(expected.std(dtype="f8"), rel=1e-5)
    else:
        assert got["min"] is got["max"] is got["mean"] is got["std"] is None


def test_show_stats_skip_nans(sample: Path) -> None:
    got = _stats(ok("show", sample, "s1/data/noisy", "--stats").stdout)
    values = NOISY[~np.isnan(NOISY)].astype("f8")
    assert got["count"] == values.size and got["nan"] == 14
    assert (got["min"], got["max"]) == (-2.0, 4.0)
    assert got["mean"] == pytest.approx(values.mean()) and got["std"] == pytest.approx(values.std())
