"""bench.bench_versions at a tiny scale: every row is produced and the counts and sizes are sane.

No timing is asserted: the figures of a run this small say nothing.
"""

from __future__ import annotations

from pathlib import Path

from bench import bench_versions
from bench.bench_versions import Scale

TINY = Scale(bench_sql_trees=10, w1=(2, 10), w3=(200, 20), repeat=1, write_repeat=1, history_snapshots=4)


def test_every_measurement_produces_its_rows(tmp_path: Path) -> None:
    sections = bench_versions.run(tmp_path / "work", TINY, tmp_path / "sql", log=lambda _: None)
    assert set(sections) == {"snapshot", "read", "current", "storage", "diff"}
    for results in sections.values():
        for op, figure in results.items():
            assert figure["median"] is not None and figure["median"] >= 0, op
            assert figure["met"] in (True, False, None), op

    snapshot = sections["snapshot"]
    assert snapshot["history rows per changed node"]["median"] == 2  # node_history 2, tree_history 1, snapshot 1
    assert snapshot["  array + chunk_ref rows of the change (diag.)"]["median"] == 2  # the clone of the array

    reads = sections["read"]
    assert len(reads) == 7  # 3 reads x (oldest, latest) on W1, and the filter on bench_sql's database
    assert all(r["unit"] == "x" and r["baseline_seconds"] > 0 for r in reads.values())

    storage = sections["storage"]
    ratio = storage["bytes on disk: W1 + 10 snapshots / (no history + changed data)"]
    assert ratio["changed"] > 0 and ratio["kept_arrays"] == 18  # rounds 2..10 each replaced the field of 2 samples
    assert ratio["without_history"] < ratio["bytes"]
    assert 0.8 < ratio["median"] < 2.0

    current = sections["current"]
    assert len([op for op in current if op.endswith("/ none")]) == 7
    assert current["  snapshots in the history file at the end (diag.)"]["median"] >= TINY.history_snapshots

    diff = sections["diff"]
    assert diff["diff, 10 trees differ (array: other shape)"]["differences"] == 20
    assert diff["  chunks decoded + pack reads, other shape"]["median"] == 0  # shapes differ: nothing read
