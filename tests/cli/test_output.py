"""Progress displays: on a terminal only, and never with --quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.helpers import cli, write_sample


@pytest.mark.parametrize("command", [
    ("import", "{db2}", "{folder}"), ("export", "{db}", "s1", "{out}"), ("bundle", "{db}", "{out}"),
    ("check", "{db}"), ("gc", "{db}"), ("show", "{db}", "s1/data/points", "--stats"),
], ids=lambda c: c[0])
def test_progress_on_a_terminal_only_and_not_with_quiet(tmp_path: Path, sample: Path, command: tuple[str, ...]) -> None:
    folder = tmp_path / "runs"
    write_sample(folder, "step000", 1)
    names = {"db": sample, "db2": tmp_path / "new.tdb", "folder": folder, "out": tmp_path / "out.json"}
    args = [part.format(**names) for part in command]
    shown = cli(*args, env={"TTY_COMPATIBLE": "1"})  # rich treats stderr as a terminal
    assert shown.returncode == 0, shown.stderr
    assert "\x1b[?25l" in shown.stderr  # the progress display hid the cursor while it ran
    for path in (names["db2"], names["out"], tmp_path / "out.bin"):
        path.unlink(missing_ok=True)
    quiet = cli(*args, "--quiet", env={"TTY_COMPATIBLE": "1"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    for path in (names["db2"], names["out"], tmp_path / "out.bin"):
        path.unlink(missing_ok=True)
    piped = cli(*args)
    assert piped.returncode == 0 and piped.stderr == ""
