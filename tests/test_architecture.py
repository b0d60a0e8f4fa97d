"""The layers import one way, the engine reads no environment, and the public surface is explicit.

(``mypy --strict`` runs as its own step of ``.ci/run``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tensordb

PACKAGE = Path(tensordb.__file__).resolve().parent

# Each layer may import only from layers listed before it (and from itself).
LAYERS = [
    {"errors", "frozen"},
    {"codec"},
    {"storage"},
    {"arrays"},
    {"trees"},
    {"database", "maintenance", "diff", "relations", "versions", "reopening"},
    {"__init__", "pointer", "limits"},
    {"cli", "demo", "io", "interop", "jsonbin", "dask", "zarr", "__main__"},
]

# Edge packages and modules built on the public API alone. They may also import one another: the command
# line uses the file formats and the demo, and the shims ``jsonbin``, ``zarr`` and ``dask`` re-export
# ``io`` and ``interop``.
EDGE = ["cli", "io", "interop", "jsonbin", "zarr", "dask", "demo"]
ON_THE_PUBLIC_API = sorted(
    p.relative_to(PACKAGE).as_posix()
    for name in EDGE
    for p in ((PACKAGE / name).rglob("*.py") if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"])
)
PUBLIC_MODULES = {"__init__", "pointer", "limits"}


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


def test_the_first_module_names_still_work() -> None:
    """``tensordb.jsonbin``, ``tensordb.zarr`` and ``tensordb.dask`` re-export io/ and interop/."""
    import tensordb.dask
    import tensordb.interop.dask
    import tensordb.interop.zarr
    import tensordb.io.jsonbin
    import tensordb.jsonbin
    import tensordb.zarr

    assert tensordb.zarr.import_ is tensordb.interop.zarr.import_
    assert tensordb.zarr.export is tensordb.interop.zarr.export
    assert tensordb.dask.from_glob is tensordb.interop.dask.from_glob
    assert tensordb.jsonbin.export_tree is tensordb.io.jsonbin.export
    assert tensordb.jsonbin.export_trees is tensordb.io.jsonbin.export_folder
    assert tensordb.jsonbin.MAX_ARRAY_BYTES == tensordb.limits.MAX_ARRAY_BYTES
    assert tensordb.zarr.MAX_CHUNK_BYTES == tensordb.limits.MAX_CHUNK_BYTES


def test_both_formats_pair_import_and_export_alike() -> None:
    import inspect

    import tensordb.interop.zarr
    import tensordb.io.jsonbin

    for module in (tensordb.io.jsonbin, tensordb.interop.zarr):
        assert list(inspect.signature(module.import_).parameters)[:3] == ["db", "name", "source"]
        assert list(inspect.signature(module.export).parameters)[:2] == ["tree_or_node", "target"]


def test_every_edge_file_is_checked() -> None:
    for name in ("io/jsonbin/reader.py", "interop/zarr/stores.py", "interop/dask.py", "jsonbin.py", "zarr.py"):
        assert name in ON_THE_PUBLIC_API


@pytest.mark.parametrize("name", ON_THE_PUBLIC_API)
def test_edge_modules_use_only_the_public_api(name: str) -> None:
    internal = {m for m in _internal_imports(PACKAGE / name) if m.split(".")[0] not in EDGE} - PUBLIC_MODULES
    assert not internal, f"{name} imports tensordb internals {sorted(internal)}"


@pytest.mark.parametrize("name", ON_THE_PUBLIC_API)
def test_edge_modules_reach_no_private_attribute(name: str) -> None:
    """``tensordb._x``, ``db._store``, ``arr._meta``, ``zarr.core``: the public API means public names too."""
    text = (PACKAGE / name).read_text()
    assert "zarr.core" not in text, f"{name} uses zarr's internal zarr.core"
    reached = set()
    for node in ast.walk(ast.parse(text)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            reached.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            reached |= {a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")}
    assert not reached, f"{name} uses private names {sorted(reached)}"


@pytest.mark.parametrize("name", ON_THE_PUBLIC_API)
def test_edge_modules_define_no_second_pointer_escaping(name: str) -> None:
    """JSON Pointer escaping is defined once, in ``tensordb.pointer``."""
    assert '"~0"' not in (PACKAGE / name).read_text(), f"{name} escapes JSON Pointers itself"


def test_the_public_api_check_sees_the_command_line() -> None:
    assert {"cli/app.py", "cli/entry.py", "cli/output.py", "cli/slices.py"} <= set(ON_THE_PUBLIC_API)
    assert "cli.common" in _internal_imports(PACKAGE / "cli" / "commands_read.py")
    assert "io.jsonbin" in _internal_imports(PACKAGE / "cli" / "commands_files.py")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own = _layer_of(module)
    for target in _internal_imports(path):
        assert _layer_of(target) <= own, f"{module} (layer {own}) imports {target} (layer {_layer_of(target)})"


def _module_imports(path: Path) -> set[str]:
    """Modules of tensordb a file imports (anywhere in it, type-checking blocks included), as dotted names."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    package_parts = list(relative.parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - node.level + 1]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # "from . import paths": each name may be a module
                found.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tensordb."):
            found.add(node.module.removeprefix("tensordb."))
    return found


def _import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph, as the list of its nodes (None if there is none)."""
    done: set[str] = set()
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        on_path = [start]
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                on_path.pop()
                done.add(node)
                continue
            nxt = todo.pop()
            if nxt in on_path:
                return on_path[on_path.index(nxt):] + [nxt]
            if nxt not in done and nxt in graph:
                stack.append((nxt, sorted(graph[nxt])))
                on_path.append(nxt)
    return None


PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package: str) -> None:
    """Modules of one folder import each other one way (a cycle means two modules that are really one)."""
    modules = {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in (PACKAGE / package).glob("*.py")}
    graph = {name: _module_imports(path) & set(modules) for name, path in modules.items()}
    assert _import_cycle(graph) is None, f"import cycle: {' -> '.join(_import_cycle(graph) or [])}"


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _import_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# Modules that still call the apsw connection directly (to be moved onto Connection's methods).
def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_storage_touches_sqlite(path: Path) -> None:
    """apsw's objects and exceptions stay behind the storage layer's connection, which maps its errors."""
    if path.relative_to(PACKAGE).parts[0] == "storage":
        return
    assert not {"apsw", "sqlite3"} & _third_party_imports(path), f"{path.relative_to(PACKAGE)} imports SQLite"
    assert ".conn.conn" not in path.read_text(), f"{path.relative_to(PACKAGE)} reaches around the Connection"


def test_storage_knows_nothing_of_numpy_or_trees() -> None:
    for path in (PACKAGE / "storage").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "numpy" not in names, path


ENGINE = ["errors", "codec", "storage", "arrays", "trees", "database", "maintenance"]


def _engine_files() -> list[Path]:
    files = []
    for name in ENGINE:
        files += sorted((PACKAGE / name).rglob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"]
    return files


def _reads_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "getenvb"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "environb", "getenv", "getenvb") for a in node.names):
            return True
    return False


def test_the_engine_reads_no_environment_variable() -> None:
    """Durability and the life of the process depend on the code only: no switch in a user's shell."""
    for path in _engine_files():
        assert not _reads_environment(ast.parse(path.read_text())), f"{path.relative_to(PACKAGE)} reads os.environ"


def test_the_environment_check_sees_a_read() -> None:
    assert _reads_environment(ast.parse("import os\nflag = os.environ.get('X')"))
    assert _reads_environment(ast.parse("from os import getenv"))
    assert not _reads_environment(ast.parse("import os\nos.fsync(3)"))


def test_public_surface() -> None:
    assert sorted(tensordb.__all__) == sorted(
        [
            "open", "Database", "Tree", "Node", "DictNode", "ListNode", "Array", "Codec", "SQLResult",
            "CheckReport", "Finding", "TensorDBError", "ReadOnlyError", "CorruptionError", "FormatError",
            "ClosedError", "StaleHandleError", "StorageError", "PathNotFoundError", "TreeExistsError",
            "MissingPacksWarning", "__version__",
            "validate", "dtype_to_text", "dtype_from_text", "auto_chunks", "iter_blocks", "human_size",
            "Snapshot", "Difference",
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



def test_the_architecture_doc_places_every_module() -> None:
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name in ("__init__.py", "__main__.py") and relative != "__init__.py":
            continue
        folder, _, name = relative.rpartition("/")
        placed = relative in doc or (folder and f"{folder}/" in doc and name[:-3] in doc)
        assert placed, f"docs/architecture.md does not say where tensordb/{relative} belongs"
