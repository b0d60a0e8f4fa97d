"""The benchmark harness's pure logic: targets, their checking, the report and the worker's output line.

Nothing here times anything: figures are given.
"""

from __future__ import annotations

import json

import pytest

from bench import report, targets
from bench.__main__ import attach_targets, only_named_peers
from bench.common import Cond, Stat, Target, Workload
from bench.run_op import format_figures, parse_figures

TDB, JSONBIN, H5PY = "tensordb", "JSON+binref", "h5py"


def stat(median: float) -> Stat:
    return Stat.value(median)


@pytest.mark.parametrize(("cond", "mine", "other", "expected"), [
    (Cond(1.0, JSONBIN), 1.0, 1.0, True),  # <= holds at equality
    (Cond(1.0, JSONBIN), 1.01, 1.0, False),
    (Cond(1.0, JSONBIN, strict=True), 1.0, 1.0, False),  # < does not
    (Cond(1.0, JSONBIN, strict=True), 0.99, 1.0, True),
    (Cond(0.33, JSONBIN), 0.33, 1.0, True),
    (Cond(0.33, JSONBIN), 0.34, 1.0, False),
    (Cond(0.150), 0.150, None, True),  # an absolute bound
    (Cond(0.150), 0.151, None, False),
    (Cond(0.9, minimum=True), 0.9, None, True),  # a floor: more is better
    (Cond(0.9, minimum=True), 0.89, None, False),
    (Cond(0.9, minimum=True, strict=True), 0.9, None, False),
])
def test_condition_bounds(cond: Cond, mine: float, other: float | None, expected: bool) -> None:
    values = {TDB: stat(mine), JSONBIN: None if other is None else stat(other)}
    assert cond.check(values) is expected


def test_a_missing_figure_leaves_a_target_unevaluated_but_a_failed_condition_still_fails() -> None:
    target = Target("<=1x JSON+binref, <1x h5py", (Cond(1.0, JSONBIN), Cond(1.0, H5PY, True)))
    assert target.check({TDB: stat(1.0), JSONBIN: stat(2.0), H5PY: stat(2.0)}) is True
    assert target.check({TDB: stat(1.0), JSONBIN: stat(2.0), H5PY: None}) is None
    assert target.check({TDB: stat(1.0), JSONBIN: None, H5PY: stat(2.0)}) is None
    assert target.check({TDB: stat(3.0), JSONBIN: None, H5PY: stat(2.0)}) is False
    assert target.check({TDB: None, JSONBIN: stat(2.0), H5PY: stat(2.0)}) is None


def test_issue_11_thresholds_are_encoded_exactly() -> None:
    def factors(workload: str, row: str) -> dict[str | None, float]:
        target = targets.target_for(workload, row)
        assert target is not None, (workload, row)
        return {c.peer: c.factor for c in target.conds}

    assert factors("W1", "write all (one transaction + sync)")[JSONBIN] == 1.0
    assert factors("W1", "reopen + read all")[JSONBIN] == 1.5
    assert factors("W1", "one field, all samples (handles)") == {JSONBIN: 1.0}
    assert factors("W1", '`time`, all samples: `db[name]["time"]`') == {JSONBIN: 1.0}
    assert factors("W1", "`time`, all samples: SQL") == {JSONBIN: 0.33}
    assert factors("W1", "restructure all (move + scalar)") == {JSONBIN: 0.1}
    assert factors("W1", "bytes on disk") == {JSONBIN: 0.5}
    assert factors("W2", "write") == factors("W2", "read full") == {"blosc2": 1.0}
    assert factors("W2", "64x64 box (open+read+close)") == {"blosc2": 1.5, "Zarr v3": 1.0, H5PY: 1.0}
    assert factors("W2", "row slab [r:r+64, :]") == factors("W2", "column slab [:, c:c+64]") == {"blosc2": 1.5}
    assert factors("W2", "streaming write: throughput / whole-array write's") == {None: 0.9}
    assert factors("W3", "write") == {JSONBIN: 2.0}
    assert factors("S", 'import, fresh process (`python -c "import X"`)') == {None: 0.150}
    assert factors("S", "`tensordb --version`") == factors("S", "`tensordb ls` on the demo database") == {None: 0.3}


def w1(**figures: dict[str, float]) -> Workload:
    """A W1 workload with the given rows (row -> system -> median), targets attached as a run does."""
    w = Workload("W1", "mesh samples", "test scale", [TDB, JSONBIN, H5PY])
    for op, values in figures.items():
        w.row(op.replace("_", " ")).values.update({k: stat(v) for k, v in values.items()})
    attach_targets(w)
    return w


def test_attach_targets_keeps_a_target_whose_row_is_missing_as_unevaluated() -> None:
    w = w1(files={TDB: 1})
    ops = [r.op for r in w.rows]
    assert set(targets.TARGETS["W1"]) <= set(ops)
    assert w.row("files").met() is True
    assert w.row("reopen + read all").met() is None


def test_missed_lists_each_miss_with_its_ratios_and_check_summary_counts() -> None:
    w = w1(files={TDB: 1})
    w.row("reopen + read all").values.update({TDB: stat(3.0), JSONBIN: stat(1.0), H5PY: stat(4.0)})
    w.row("restructure all (move + scalar)").values.update({TDB: stat(0.05), JSONBIN: stat(1.0)})
    assert report.missed([w]) == [
        "W1 reopen + read all: 3 s (3.00x JSON+binref, 0.75x h5py); target <=1.5x JSON+binref, <1x h5py"]
    summary = report.check_summary([w])
    assert summary.splitlines()[0].startswith("targets: 2 met, 1 missed, ")
    assert "MISSED W1 reopen + read all" in summary


def test_tables_leave_out_rows_without_figures_or_target_and_bold_misses() -> None:
    w = w1(files={TDB: 1})
    w.row("an informative row that was not measured")
    w.row("reopen + read all").values.update({TDB: stat(3.0), JSONBIN: stat(1.0), H5PY: stat(4.0)})
    _, body = report.cells(w)
    assert "an informative row that was not measured" not in [row[0] for row in body]
    assert "reopen + read all" in [row[0] for row in body]
    markdown = report.markdown_table(w)
    assert "| reopen + read all | 3 s | 1 s | 4 s | 3.00x JSON+binref | <=1.5x JSON+binref, <1x h5py | **MISSED** |" \
        in markdown.splitlines()


def test_json_round_trip_keeps_figures_and_targets_including_floors() -> None:
    w = Workload("W2", "big array", "test scale", [TDB, "blosc2"])
    w.row("streaming write: throughput / whole-array write's", "x").values[TDB] = stat(0.85)
    w.row("write").values.update({TDB: Stat(1.0, 0.9, 1.2, 3), "blosc2": stat(1.1)})
    attach_targets(w)
    back = report.from_json(json.loads(json.dumps(report.to_json([w]))))[0]
    assert [(r.op, r.values, r.met()) for r in back.rows] == [(r.op, r.values, r.met()) for r in w.rows]
    assert back.row("streaming write: throughput / whole-array write's").met() is False


def test_worker_figures_line_round_trips() -> None:
    figures = {"excluded": 0.123456789, "n": 1000.0, "durable": 16592.0}
    assert parse_figures(format_figures(figures)) == figures


def test_quick_runs_tensordb_and_the_peers_that_the_targets_name() -> None:
    available: dict[str, str | None] = {TDB: None, JSONBIN: None, H5PY: None, "Zarr v3": "zarr is not installed",
                                        ".npy": None}
    w3 = only_named_peers(available, "W3")
    assert targets.peers_named("W3") == {JSONBIN}
    assert w3[TDB] is None and w3[JSONBIN] is None
    assert w3[H5PY] and w3[".npy"]
    assert w3["Zarr v3"] == "zarr is not installed"  # a reason already given is kept
    assert only_named_peers(available, "W1")[H5PY] is None
