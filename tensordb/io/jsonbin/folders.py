"""Folders of JSON+binref files as many trees: a tree per file, named by the file's path.

``sim01/step003.json`` under the folder is the tree ``"sim01/step003"``
both ways: :func:`import_folder` imports a folder (one transaction per
file) and :func:`export_folder` writes trees back into one.
"""

from __future__ import annotations

import contextlib
import errno
import ntpath
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tensordb

from .names import refuse_existing, strip_json
from .reader import import_
from .writer import check_output, export, os_error

__all__ = ["ImportReport", "folder_files", "import_folder", "export_folder"]


@dataclass
class ImportReport:
    """The outcome of :func:`import_folder`.

    Attributes
    ----------
    imported : list of str
        Names of the trees imported, in import order.
    failed : list of (str, str)
        ``(file path, error message)`` for every file that was not imported.
    skipped : list of str
        Names of the trees that existed and were kept (``skip_existing``).
    """

    imported: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file was imported."""
        return not self.failed


def import_folder(
    db: tensordb.Database,
    folder: str | os.PathLike[str],
    pattern: str = "**/*.json",
    progress: Callable[[int, int, str], object] | None = None,
    *,
    prefix: str = "",
    replace: bool = False,
    skip_existing: bool = False,
) -> ImportReport:
    """Import every JSON+binref file of a folder, one tree (and one transaction) per file.

    A tree is named after the file's path relative to ``folder``, without
    ``.json`` and with ``/`` separators (``sim01/step003.json`` ->
    ``"sim01/step003"``). A bad file is recorded in the report with its
    error message and imports nothing; the other files are still imported.

    Names that exist already are checked first: unless ``replace`` or
    ``skip_existing`` is given, :class:`tensordb.TreeExistsError` names them
    and nothing is imported.

    Parameters
    ----------
    db : tensordb.Database
        The database to import into (open for writing).
    folder : str or path-like
        The folder to search.
    pattern : str
        A :meth:`pathlib.Path.glob` pattern relative to ``folder``
        (default ``"**/*.json"``: every JSON file, recursively).
    progress : callable, optional
        Called as ``progress(done, total, path)`` after each file.
    prefix : str
        Put before every tree name (``"run2/"`` -> ``"run2/sim01/step003"``).
    replace : bool
        Replace existing trees of the same names.
    skip_existing : bool
        Keep existing trees and import only the files whose trees are missing:
        this is how an interrupted import resumes.

    Returns
    -------
    ImportReport
        ``imported`` and ``skipped`` tree names, ``failed`` (file, message) pairs, ``ok``.

    Example
    -------
    >>> report = import_folder(db, "samples/", progress=lambda done, total, path: print(done, total, path))
    >>> report.ok
    True
    """
    if db.readonly:
        raise tensordb.ReadOnlyError(f"{db.filename}: database is open read-only")
    files = folder_files(folder, pattern, prefix)
    keep = refuse_existing(db, [(os.fspath(f), n) for f, n in files], replace=replace, skip_existing=skip_existing)
    report = ImportReport()
    for done, (file, tree_name) in enumerate(files, start=1):
        if tree_name in keep:
            report.skipped.append(tree_name)
        else:
            try:
                report.imported.append(import_(db, tree_name, file, replace=replace))
            except (tensordb.ClosedError, tensordb.ReadOnlyError):
                raise
            except Exception as exc:  # one bad file must not stop the others
                report.failed.append((os.fspath(file), str(exc) or type(exc).__name__))
        if progress is not None:
            progress(done, len(files), os.fspath(file))
    return report


def folder_files(
    folder: str | os.PathLike[str], pattern: str = "**/*.json", prefix: str = ""
) -> list[tuple[Path, str]]:
    """``(file, tree name)`` of every file a folder import would import, sorted by path.

    Example
    -------
    >>> folder_files("samples/")[:1]
    [(PosixPath('samples/sim01/step000.json'), 'sim01/step000')]
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{os.fspath(folder)}: not a folder")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    return [(file, prefix + strip_json(file.relative_to(root).as_posix())) for file in files]



def export_folder(
    db: tensordb.Database,
    addresses: list[str],
    folder: str | os.PathLike[str],
    inline_below: int = 1024,
    *,
    force: bool = False,
    progress: Callable[[int, int, str], object] | None = None,
) -> list[str]:
    """Export trees into a folder, the inverse of :func:`import_folder`: tree names become paths.

    Tree ``"sim01/step003"`` becomes ``FOLDER/sim01/step003.json`` (and
    ``.bin``); sub-folders are created. An address may also name a subtree
    (``"sim01/step003/data"``, see :meth:`tensordb.Database.resolve`).
    Every output file is checked before the first is written: a name that
    would leave the folder (``..``, absolute, empty segments) raises
    :class:`ValueError`, an existing file (without ``force``) or two
    addresses writing one file :class:`FileExistsError`. Each file appears
    only once complete, and an error removes the files and folders this call
    created (an interrupt leaves the complete ones).

    Returns
    -------
    list of str
        The JSON files written, in ``addresses`` order.

    Example
    -------
    >>> export_folder(db, [n for n in db if n.startswith("sim01/")], "out/")
    ['out/sim01/step000.json', ...]
    """
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise os_error(FileNotFoundError, errno.ENOENT, f"{root}: folder does not exist")
    values = [db.resolve(address) for address in addresses]  # every address is checked first
    targets = [os.path.join(root, *_safe_segments(name, root)) + ".json" for name in addresses]
    seen: dict[str, str] = {}
    for name, target in zip(addresses, targets):
        key = os.path.normcase(target)
        if key in seen:
            raise os_error(FileExistsError, errno.EEXIST,
                            f"{target}: trees {seen[key]!r} and {name!r} would both be written there")
        seen[key] = name
    for target in targets:
        if os.path.isdir(os.path.dirname(target)):  # a folder still to be created holds nothing to overwrite
            check_output(target, os.path.abspath(target), os.path.abspath(target[:-5] + ".bin"), force)
    created: list[str] = []  # files and folders this call made, removed again if it fails
    try:
        for done, (value, target) in enumerate(zip(values, targets), start=1):
            created += _make_folders(os.path.dirname(target))
            fresh = [p for p in (target, target[:-5] + ".bin") if not os.path.lexists(p)]
            export(value, target, inline_below, force=force)
            created += [p for p in fresh if os.path.lexists(p)]
            if progress is not None:
                progress(done, len(targets), target)
    except Exception:  # an error leaves nothing behind; an interrupt (Ctrl-C) leaves the whole files written
        for path in reversed(created):
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    os.rmdir(path)
                else:
                    os.remove(path)
        raise
    return targets


def _make_folders(folder: str) -> list[str]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing: list[str] = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        os.mkdir(path)
    return list(reversed(missing))


def _safe_segments(name: str, root: str) -> list[str]:
    """The path segments of a tree name, refused if the name would leave the export folder."""
    segments = name.split("/")
    for seg in segments:
        if seg in ("", ".", "..") or "\\" in seg or "\0" in seg or ntpath.splitdrive(seg)[0]:
            raise ValueError(f"{root}: tree {name!r} cannot become a file path (empty, '.' or '..' segments, "
                             "backslashes and drive letters are refused)")
    return segments
