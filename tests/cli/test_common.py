"""What every command shares: one-line errors for bad input, tracebacks for bugs, read-only opening, addresses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tensordb
from cli.helpers import fails, ok, run, write_sample
from tensordb.cli.app import main


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.tdb"
    content = b"hello, this is not SQLite" * 10
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["demo", str(bad), "--force"])  # even --force replaces only a tensordb file
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {bad} is not a tensordb file; refusing to overwrite it"]
    assert bad.read_bytes() == content


@pytest.mark.parametrize("args", [
    ["ls", "{db}"], ["ls", "{db}", "t"], ["tree", "{db}", "t"], ["show", "{db}", "t/x"], ["sql", "{db}", "SELECT 1"],
    ["stats", "{db}"], ["gc", "{db}"], ["gc", "{db}", "--dry-run"], ["check", "{db}"], ["bundle", "{db}", "{out}"],
    ["export", "{db}", "t", "{out}.json"],
], ids=lambda a: " ".join(a[:1] + a[2:]).replace("{db}", "").replace("{out}", "OUT"))
def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "missing.tdb"
    error = fails(*(a.format(db=db, out=tmp_path / "out") for a in args))
    assert error == f"Error: {db}: no such database"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tdb"
    bad.write_bytes(b"not sqlite at all" * 100)
    assert "not a tensordb file" in fails("ls", bad)


@pytest.mark.parametrize("args", [
    ["ls"], ["ls", "s1"], ["tree", "s1"], ["show", "s1/data/points", "--stats"], ["show", "s1/time"],
    ["sql", "SELECT 1"], ["stats"], ["check"], ["gc", "--dry-run"], ["bundle", "{tmp}/b.tdb"],
    ["export", "s1", "{tmp}/e.json"],
], ids=" ".join)
def test_commands_that_only_read_open_read_only(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                args: list[str]) -> None:
    modes: list[str] = []
    real_open = tensordb.open

    def spy(path: Any, mode: str = "a", **kwargs: Any) -> tensordb.Database:
        modes.append(mode)
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(tensordb, "open", spy)
    ok(args[0], sample, *(a.format(tmp=tmp_path) for a in args[1:]))
    assert modes == ["r"]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "ls", tmp_path / "missing.tdb")
    assert result.exit_code == 1
    assert isinstance(result.exception, FileNotFoundError)


def test_debug_shows_the_traceback_of_bad_input_too(sample: Path) -> None:
    result = run("--debug", "show", sample, "s1/data/points", "--slice", "0:1+2")
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "bad slice" in str(result.exception)


def _is_a_bug_report(result: Any, kind: type[BaseException]) -> bool:
    """The exception escaped the command as itself (Python prints its traceback), not as a one-line error."""
    return (result.exit_code == 1 and type(result.exception) is kind and result.exception.args == ("planted",)
            and "Error:" not in result.stderr)


def _planted(kind: type[BaseException] = TypeError) -> Any:
    """A function that fails as a bug would."""

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise kind("planted")

    return bug


@pytest.mark.parametrize("kind", [TypeError, KeyError, IndexError, ValueError])
def test_a_bug_in_the_engine_is_not_reported_as_bad_input(sample: Path, monkeypatch: pytest.MonkeyPatch,
                                                         kind: type[BaseException]) -> None:
    monkeypatch.setattr(tensordb.Database, "stats", _planted(kind))
    assert _is_a_bug_report(run("stats", sample), kind)


@pytest.mark.parametrize("args, target", [
    (["show", "{db}", "s1/data/points", "--slice", "0:2"], "tensordb.cli.commands_read._sharing"),
    (["show", "{db}", "s1/data/points", "--stats"], "tensordb.cli.commands_read.array_stats"),
    (["ls", "{db}", "s1"], "tensordb.cli.commands_read._describe"),
    (["rm", "{db}", "s1/time"], "tensordb.cli.commands_write._deepest_first"),
    (["export", "{db}", "s1", "{tmp}/out.json"], "tensordb.cli.commands_files.working"),
], ids=["show", "show --stats", "ls", "rm", "export"])
def test_a_bug_next_to_expected_bad_input_is_not_reported_as_bad_input(
        sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], target: str) -> None:
    """Commands that expect builtin errors from the user's input catch them at that call only."""
    monkeypatch.setattr(target, _planted())
    assert _is_a_bug_report(run(*(a.format(db=sample, tmp=tmp_path) for a in args)), TypeError)


def test_a_bug_importing_a_folder_is_not_reported_as_a_bad_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "runs"
    write_sample(folder, "step000", 0)
    monkeypatch.setattr("tensordb.io.jsonbin.import_", _planted())
    result = run("import", tmp_path / "i.tdb", folder)
    assert _is_a_bug_report(result, TypeError) and "failed:" not in result.stderr


def test_a_bug_shows_its_traceback_in_a_real_subprocess(sample: Path) -> None:
    code = ("import sys, tensordb\n"
            "def planted(self): raise TypeError('planted')\n"
            "tensordb.Database.stats = planted\n"
            f"sys.argv = ['tensordb', 'stats', {str(sample)!r}]\n"
            "from tensordb.cli.entry import main\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert "Traceback (most recent call last)" in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "TypeError: planted"


def test_errors_in_a_real_subprocess_are_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tensordb", "ls", str(tmp_path / "nope.tdb")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.tdb'}: no such database"]
    assert out.stdout == ""


def test_the_longest_tree_name_prefix_wins(sample: Path) -> None:
    # "sim01" and "sim01/step003" both exist: the longest prefix is the tree, the rest the pointer
    assert json.loads(ok("show", sample, "sim01/step003/time").stdout) == 3
    assert json.loads(ok("show", sample, "sim01/data/p").stdout) == "not the one"
    assert "(50,) float64" in ok("show", sample, "sim01/step003/data/p").stdout
    # a key with "/" is reached with its JSON Pointer escape
    assert json.loads(ok("show", sample, "s1/data/a~1b").stdout) == "slash key"


def test_a_missing_tree_or_pointer_is_one_line(sample: Path) -> None:
    assert fails("show", sample, "nope") == f"Error: {sample}: no tree named 'nope'"
    assert fails("tree", sample, "nope/data") == f"Error: {sample}: no tree named 'nope/data' or by a prefix of it"
    assert fails("ls", sample, "s1/data/missing") == f"Error: {sample}: s1: /data/missing: no such path"
    assert "no such path" in fails("show", sample, "sim01/step003/data/q")


def test_read_only_commands_leave_only_what_sqlite_needs(sample: Path) -> None:
    """As docs/format.md says: reads leave an empty -wal and the -shm index; a read-write close removes both."""
    def beside() -> list[str]:
        return sorted(p.name for p in sample.parent.iterdir() if p.name.startswith(sample.name))

    assert beside() == ["s.tdb"]
    for args in (("ls",), ("tree", "s1"), ("sql", "SELECT 1")):
        ok(args[0], sample, *args[1:])
        assert beside() == ["s.tdb", "s.tdb-shm", "s.tdb-wal"]
        assert (sample.parent / "s.tdb-wal").stat().st_size == 0
    tensordb.open(sample).close()
    assert beside() == ["s.tdb"]
