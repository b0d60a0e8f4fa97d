"""The README's quickstart runs as written, and its first lines are the two set-up commands."""

from __future__ import annotations

import os
import re
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
