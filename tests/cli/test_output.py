"""Progress displays (on a terminal only, and never with --quiet) and tables (rich on a terminal, plain text
to a pipe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tensordb
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


def _on_a_terminal(*args: object) -> str:
    """The standard output of a command run with a pseudo-terminal as its standard output."""
    main_fd, sub_fd = os.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "tensordb", *map(str, args)], stdout=sub_fd,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        os.close(sub_fd)
        assert done.returncode == 0, done.stderr
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the terminal is closed and read to the end
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(main_fd)


def test_tables_show_names_and_values_as_they_are(tmp_path: Path) -> None:
    """Brackets are text, not rich markup ("[/x]" used to stop the command); a plain row is one line."""
    db = tmp_path / "m.tdb"
    with tensordb.open(db, mode="w") as database:
        database["a[red]b"] = {"x[bold]": 1, "y": "[/oops]", "z": "two\tcolumns\nand lines"}
    assert cli("ls", db).stdout.splitlines()[1].split() == ["a[red]b", "dict", "4", "0", "0", "B"]
    assert cli("ls", db, "a[red]b").stdout.splitlines() == [
        "key      kind  items  shape  dtype  value",
        "x[bold]  int                        1",
        "y        str                        [/oops]",
        "z        str                        two\\tcolumns\\nand lines",
    ]
    drawn = _on_a_terminal("ls", db, "a[red]b")
    assert "┃" in drawn and "x[bold]" in drawn and "[/oops]" in drawn  # rich drew the table
