"""The README runs as written: its set-up lines, its quickstart and its JSON+binref walk-through."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_setup_commands() -> None:
    paragraphs = README.read_text().split("\n\n")
    assert paragraphs[0] == "# tensordb"
    block = re.fullmatch(r"```bash\n(.*?)```", paragraphs[1], re.S)
    assert block is not None
    assert block.group(1).strip().splitlines() == [
        "pip install . && tensordb demo",
        'pip install ".[test]" && pytest',
    ]


def test_quickstart_runs(tmp_path: Path) -> None:
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {}
        exec(compile(code.group(1), "README quickstart", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "share.tdb").exists()
    import tensordb

    with tensordb.open(tmp_path / "share.tdb", mode="r") as db:
        assert db["copy"]["/data/points"][0:10].sum() == 0  # copy-on-write kept the copy intact
        assert db["sample037"]["/data/xyz"][0:10].sum() == 30.0
        assert db["sample037"]["/data/cells"].load() == [1, 2, 3, 4]
        assert db["sample037"]["label"] == "s037" and db["sample037"]["reviewed"] is True
        assert db["copy"]["name"] == "s037" and "reviewed" not in db["copy"]
        assert db.check().ok


# -- the JSON+binref walk-through, from a fresh checkout ------------------------------------------

ROOT = README.parent
SAMPLE_TREE = "bm01-flow-over-cylinder-sample037_510"


def _blocks(title: str) -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```(bash|python)\n(.*?)```", text[start:end if end != -1 else len(text)], re.S)


def _fresh_checkout(tmp_path: Path) -> Path:
    """What a clone holds that the walk-through uses: the README and the shipped example."""
    repo = tmp_path / "tensordb"
    repo.mkdir()
    shutil.copy(README, repo / "README.md")
    shutil.copytree(ROOT / "examples", repo / "examples")
    return repo


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this source tree, whatever is installed
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_example_is_small_and_complete() -> None:
    files = sorted(p.name for p in (ROOT / "examples" / "seed-example").iterdir())
    assert files == ["README.md", f"{SAMPLE_TREE}.json", "fe5be72c-cc13-4c2c-bdd9-f628e33ea71e.bin"]
    assert sum(p.stat().st_size for p in (ROOT / "examples").rglob("*") if p.is_file()) < 400_000


def test_json_binref_walk_through_runs_in_order_from_a_fresh_checkout(tmp_path: Path) -> None:
    """Every shell command of the section, in order, as real processes; the Python block too."""
    blocks = _blocks("Coming from JSON+binref")
    assert [lang for lang, _ in blocks] == ["bash", "python", "bash", "bash"]
    repo = _fresh_checkout(tmp_path)
    outputs: list[tuple[list[str], str]] = []
    for lang, code in blocks:
        if lang == "python":
            result = _run([sys.executable, "-c", code], repo)
            assert result.returncode == 0, result.stderr
            outputs.append((["python"], result.stdout))
            continue
        for line in code.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            args = shlex.split(line)
            assert args[0] == "tensordb", line
            result = _run([sys.executable, "-m", "tensordb", *args[1:]], repo)
            expected = 1 if args[1] == "diff" else 0  # diff exits 1 when the two differ, as the README says
            assert result.returncode == expected, (line, result.stdout, result.stderr)
            outputs.append((args[1:], result.stdout))

    def output(command: str, option: str | None = None) -> str:
        return next(out for args, out in outputs if args[0] == command and (option is None or option in args))

    assert output("import").strip() == "imported 1 of 1 file(s) into samples.tdb"
    assert output("import", "--skip-existing").strip() == (
        "imported 0 of 0 file(s) into samples.tdb, kept 1 existing tree(s)")
    assert SAMPLE_TREE in output("ls")
    assert "points  array (4778, 3) float32" in output("tree")
    assert re.search(rf"^{re.escape(SAMPLE_TREE)}  +/0/time  +51$", output("sql"), re.M)
    assert "inlet/points[0:5,:]: (5, 3) float32" in output("show", "0:5,:")
    assert "inlet/points[[0,10,20]]: (3, 3) float32" in output("show", "[0,10,20]")
    assert re.search(r"^count  +4778$", output("show", "--stats"), re.M)
    assert output("diff").splitlines() == ["- /0/data/wall: dict (6 items)", "+ /0/data/walls: dict (6 items)"]
    assert output("python").startswith('<tensordb.Array "/points"')
    assert output("check").startswith("check: ok")
    exported = json.loads((repo / "sample037.json").read_text())
    assert list(exported[0]["data"]) == ["outlet", "wall", "obstacle", "internal", "inflow"]  # the move
    assert (repo / "sample037.bin").exists() and (repo / "share.tdb").exists()
    assert sorted(p.name for p in (repo / "exported").iterdir()) == [
        f"{SAMPLE_TREE}.bin", f"{SAMPLE_TREE}.json", "sample037.bin", "sample037.json", "walls.bin", "walls.json"]
    trees = _run([sys.executable, "-m", "tensordb", "ls", "samples.tdb", "--format", "csv"], repo).stdout
    assert [line.split(",")[0] for line in trees.splitlines()[1:]] == [SAMPLE_TREE, "sample037"]  # rm walls
