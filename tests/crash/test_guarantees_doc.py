"""docs/guarantees.md names real tests, and every crash point is in its table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tensordb.storage.hooks import TRACE_STEPS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "guarantees.md"


def test_every_test_named_in_the_guarantees_exists() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)", text))
    assert len(named) >= 20
    for path, name in sorted(named):
        tree = ast.parse((ROOT / path).read_text())
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        # a test may also be bound by name (``test_machine = Machine.TestCase``)
        functions |= {t.id for node in tree.body if isinstance(node, ast.Assign)
                      for t in node.targets if isinstance(t, ast.Name)}
        assert name in functions, f"docs/guarantees.md names {path}::{name}, which does not exist"


def test_every_crash_point_is_documented() -> None:
    rows = set(re.findall(r"^\| `([a-z-]+)` \|", DOC.read_text(), re.M))
    assert rows == set(TRACE_STEPS)
