"""The layers import one way, the public surface is explicit, and the package type-checks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tensordb

PACKAGE = Path(tensordb.__file__).resolve().parent

# Each layer may import only from layers listed before it (and from itself).
LAYERS = [
    {"errors", "faults"},
    {"codec"},
    {"storage"},
    {"arrays"},
    {"trees"},
    {"database", "maintenance", "diff", "relations"},
    {"__init__"},
    {"cli", "cli_output", "cli_slices", "demo", "jsonbin", "dask", "zarr", "__main__"},
]


def _layer_of(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module {module} is not assigned to a layer")


def _internal_imports(path: Path) -> list[str]:
    """tensordb modules imported by a file, as dotted names relative to the package."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    package_parts = list(relative.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                if not target:  # "from . import x" at the top level
                    found.extend(alias.name for alias in node.names)
                else:
                    found.append(target)
            elif node.module and node.module.startswith("tensordb"):
                found.append(node.module.removeprefix("tensordb").lstrip(".") or "__init__")
        elif isinstance(node, ast.Import):
            found.extend(a.name.removeprefix("tensordb.") for a in node.names if a.name.startswith("tensordb"))
    return [f if f != "tensordb" else "__init__" for f in found]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own = _layer_of(module)
    for target in _internal_imports(path):
        assert _layer_of(target) <= own, f"{module} (layer {own}) imports {target} (layer {_layer_of(target)})"


def test_storage_knows_nothing_of_numpy_or_trees() -> None:
    for path in (PACKAGE / "storage").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "numpy" not in names, path


def test_public_surface() -> None:
    assert sorted(tensordb.__all__) == sorted(
        [
            "open", "Database", "Tree", "Node", "DictNode", "ListNode", "Array", "Codec", "SQLResult",
            "CheckReport", "Finding", "TensorDBError", "ReadOnlyError", "CorruptionError", "FormatError",
            "ClosedError", "StaleHandleError", "StorageError", "PathNotFoundError", "TreeExistsError",
            "MissingPacksWarning", "__version__",
        ]
    )
    for name in tensordb.__all__:
        obj = getattr(tensordb, name)
        if callable(obj):
            assert obj.__doc__, f"tensordb.{name} has no docstring"


def test_errors_subclass_the_base_and_builtins() -> None:
    for name in ("ReadOnlyError", "CorruptionError", "FormatError", "ClosedError", "StaleHandleError",
                 "StorageError", "PathNotFoundError"):
        assert issubclass(getattr(tensordb, name), tensordb.TensorDBError)
    assert issubclass(tensordb.PathNotFoundError, KeyError)
    assert issubclass(tensordb.StorageError, OSError)
    assert issubclass(tensordb.TreeExistsError, tensordb.TensorDBError)
    assert issubclass(tensordb.TreeExistsError, FileExistsError)
    assert str(tensordb.PathNotFoundError("a: b")) == "a: b"  # not quoted like KeyError


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()


def test_mypy_strict() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", str(PACKAGE)], capture_output=True, text=True,
                         cwd=PACKAGE.parent, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
