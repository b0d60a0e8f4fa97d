"""Random crashes: forked writers killed with SIGKILL at random moments, with a live reader.

Each kill is verified (``harness.run_random_crashes``): the database opens,
every transaction the writer acknowledged is there with the right values,
the one in flight is there entirely or not at all, check() reports nothing
but reclaimable pack bytes, and nothing at all after gc(). Every other kill
is also a power loss for pack files (every pack change not yet durable is
undone). A reader process loads random trees throughout, checking each
tree's digest; it must never fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crash import harness

pytestmark = pytest.mark.slow

SEED = 61


def test_random_kills_lose_nothing_acknowledged(tmp_path: Path, long_run: bool) -> None:
    trials = 3000 if long_run else 300
    result = harness.run_random_crashes(str(tmp_path), SEED, trials)
    report = result.summary() + "".join(f"\n{v}" for v in result.violations[:5])
    assert not result.violations, report
    assert result.trials == trials, report
    assert not result.reader_errors, report + "\nreader: " + "\n".join(result.reader_errors[:10])
    assert result.reads > trials, report  # the reader really ran alongside
    assert result.transactions > trials, report  # most kills landed after real work
    assert result.losses_applied == trials // 2, report


def test_random_kills_catch_the_planted_ordering_bug(tmp_path: Path) -> None:
    """COMMIT before the pack fsync loses committed pack bytes when a kill is also a power loss.

    A SIGKILL alone cannot show this bug (the page cache keeps the bytes), so
    every kill here also undoes the pack changes not yet fsynced. The planted
    bug fsyncs a transaction's packs only when the next one begins, so most
    kills land in that window.
    """
    result = harness.run_random_crashes(str(tmp_path), SEED, 50, lose=lambda i: True,
                                        planted="commit-before-pack-flush",
                                        stop_at_first=True, reader=False)
    assert result.violations, result.summary()
    assert result.first_violation is not None and result.first_violation < 50
    assert "past the end of the file" in result.violations[0] or "missing" in result.violations[0]
