"""The command group: help and examples of every command, --version, the README, warnings on the terminal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import tensordb
from cli.helpers import COMMANDS, README, ok, run
from tensordb.cli.app import main


def test_help_lists_demo_with_an_example() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    demo_help = CliRunner().invoke(main, ["demo", "--help"])
    assert demo_help.exit_code == 0 and "Example" in demo_help.output


def test_every_command_is_listed_and_has_help_with_an_example() -> None:
    assert set(main.commands) >= COMMANDS
    listing = ok("--help").stdout
    assert "TREE[/POINTER]" in listing and "longest" in listing  # the address rule is documented
    for name in main.commands:
        assert re.search(rf"^\s+{name}\s", listing, re.M), f"{name} is not listed in tensordb --help"
        text = ok(name, "--help").stdout
        assert "Example:" in text, f"tensordb {name} --help has no example"
        example = text.split("Example:", 1)[1]
        assert f"tensordb {name}" in example, f"the example of {name} does not run {name}"


def test_readme_mentions_every_command() -> None:
    readme = README.read_text()
    for name in main.commands:
        assert f"tensordb {name}" in readme, f"README.md does not mention `tensordb {name}`"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and tensordb.__version__ in result.output


def test_readme_json_binref_section_follows_the_quickstart() -> None:
    text = README.read_text()
    assert text.index("## Quickstart") < text.index("## Coming from JSON+binref")


def test_a_missing_packs_folder_is_one_warning_line_and_check_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "orig.tdb"
    with tensordb.open(path) as db:
        db["a"] = {"x": np.random.default_rng(0).random(300_000)}
    copy = tmp_path / "copy.tdb"
    copy.write_bytes(path.read_bytes())
    listed = run("ls", copy)
    assert listed.exit_code == 0 and "a " in listed.stdout
    assert listed.stderr.strip() == (f"warning: {copy}: 1 pack file(s) missing (or not regular files) in "
                                     f"{copy}-packs: 00000001.pack; reading the arrays stored there will fail (was "
                                     "the database copied without its packs folder?); tensordb check lists them")
    checked = run("check", copy)
    assert checked.exit_code == 1 and "pack-missing: pack file 00000001.pack is missing" in checked.stdout
