"""The JSON+binref format under its first module name; it lives in :mod:`tensordb.io.jsonbin`.

``import_file(db, path, name)``, ``export_tree`` and ``export_trees`` are
the first names of ``import_(db, name, source)``, ``export`` and
``export_folder``, kept for code written against them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import tensordb
from tensordb import limits
from tensordb.io.jsonbin import (
    ImportReport,
    export,
    export_folder,
    folder_files,
    import_,
    import_folder,
    refuse_clashes,
    refuse_existing,
)

__all__ = [
    "import_", "export", "import_folder", "export_folder", "folder_files", "refuse_existing", "refuse_clashes",
    "ImportReport", "import_file", "export_tree", "export_trees", "MAX_ARRAY_BYTES",
]

MAX_ARRAY_BYTES = limits.MAX_ARRAY_BYTES
export_tree = export
export_trees = export_folder


def import_file(
    db: tensordb.Database,
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    replace: bool = False,
    skip_existing: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> str:
    """``import_(db, name, path, ...)`` under its first name and argument order."""
    return import_(db, name, path, replace=replace, skip_existing=skip_existing, progress=progress)
