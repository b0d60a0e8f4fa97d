"""Which trees an import writes: names from file names, and the checks made before anything is written."""

from __future__ import annotations

import tensordb

__all__ = ["refuse_existing", "refuse_clashes", "strip_json", "listing"]


def refuse_existing(
    db: tensordb.Database, planned: list[tuple[str, str]], *, replace: bool = False, skip_existing: bool = False
) -> set[str]:
    """Check an import's ``(source, tree name)`` pairs before anything is written.

    Raises :class:`tensordb.TreeExistsError` naming every tree that two
    sources would both write, and (without ``replace`` or ``skip_existing``)
    every tree that exists already. Returns the names to keep (skip).
    """
    if replace and skip_existing:
        raise ValueError("replace and skip_existing exclude each other")
    refuse_clashes(db.filename, planned)
    existing = [name for name in dict.fromkeys(name for _, name in planned) if name in db]
    if replace or not existing:
        return set()
    if skip_existing:
        return set(existing)
    raise tensordb.TreeExistsError(
        f"{db.filename}: {len(existing)} tree(s) exist already, nothing was imported: "
        f"{listing([repr(n) for n in existing])}; pass --replace or --skip-existing (replace=True or "
        "skip_existing=True in Python)"
    )


def refuse_clashes(filename: str, planned: list[tuple[str, str]]) -> None:
    """Raise :class:`tensordb.TreeExistsError` naming every tree two of the ``(source, tree name)`` pairs share."""
    sources: dict[str, list[str]] = {}
    for source, name in planned:
        sources.setdefault(name, []).append(source)
    clashes = [f"{name!r} (from {' and '.join(srcs)})" for name, srcs in sources.items() if len(srcs) > 1]
    if clashes:
        raise tensordb.TreeExistsError(
            f"{filename}: several sources would write the same tree, nothing was imported: "
            f"{listing(clashes)}; import a folder that holds them all (tree names then keep their sub-folders), "
            "or one source at a time with --prefix or --name"
        )


def listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def strip_json(name: str) -> str:
    return name[: -len(".json")] if name.lower().endswith(".json") and len(name) > 5 else name

