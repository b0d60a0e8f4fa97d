"""How the command line prints: tables, CSV and JSON rows, scalars, sizes, progress displays."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

import tensordb

if TYPE_CHECKING:  # numpy and rich cost a command that lists to a pipe about 200 ms: imported on use
    from rich.console import Console
    from rich.progress import Progress

#: Longest text shown in a table cell or a tree label before it is cut with "…".
MAX_TEXT = 80


def is_numpy_scalar(value: Any) -> bool:
    """Whether ``value`` is a numpy scalar, without importing numpy (a command that lists or shows does not)."""
    numpy = sys.modules.get("numpy")  # a numpy scalar exists only once numpy is imported
    return numpy is not None and isinstance(value, numpy.generic)


def kind_of(value: Any) -> str:
    if isinstance(value, tensordb.Node):
        return value.kind
    if isinstance(value, tensordb.Array):
        return "array"
    if is_numpy_scalar(value):  # its dtype says more
        return {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(value.dtype.kind, str(value.dtype.name))
    for kind, types in (("null", type(None)), ("bool", bool), ("int", int), ("float", float), ("str", str),
                        ("bytes", bytes), ("dict", dict), ("list", list)):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def plain(value: Any) -> Any:
    """A JSON-ready value: arrays as {"array": {shape, dtype}}, bytes as {"bytes": base64}."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, tensordb.Array):
        return {"array": {"shape": list(value.shape), "dtype": str(value.dtype)}}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if is_numpy_scalar(value):
        item = value.item()
        return plain(item) if isinstance(item, (bool, int, float, str, bytes)) else str(value)
    return value


def scalar_text(value: Any) -> str:
    """How a scalar reads in a table cell or tree label: JSON, so that "51" and 51 differ."""
    return json.dumps(plain(value), ensure_ascii=False)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(message: str) -> str:
    return " ".join(message.split())


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def progress_display(quiet: bool, bar: bool = True) -> Progress:
    """A transient progress display on stderr; off with --quiet or when stderr is not a terminal.

    ``bar=False`` gives a spinner with the elapsed time, for work whose size is not known up front.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    display = console(stderr=True)
    columns: tuple[Any, ...] = (
        (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn()) if bar
        else (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    )
    return Progress(*columns, console=display, transient=True, disable=quiet or not display.is_terminal)


@contextlib.contextmanager
def working(quiet: bool, what: str) -> Iterator[None]:
    """A spinner saying what runs, for commands that report no progress of their own."""
    with progress_display(quiet, bar=False) as progress:
        progress.add_task(what, total=None)
        yield


def tail(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def console(stderr: bool = False) -> Console:
    """A rich console: colours on a terminal only; no wrapping when piped."""
    from rich.console import Console

    result = Console(stderr=stderr, highlight=False)
    if not result.is_terminal:
        result.width = 10_000
    return result


def cell(value: Any, size: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if size and isinstance(value, int):
        return tensordb.human_size(value)
    if isinstance(value, (bytes, dict, list)):
        return cut(json.dumps(plain(value), ensure_ascii=False), MAX_TEXT)
    return cut(str(value), MAX_TEXT)


def emit(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str, sizes: Collection[str] = ()) -> int:
    """Print rows as a table, CSV or a JSON list of objects (CSV and JSON stream); return how many.

    A table is drawn by rich on a terminal. To a pipe or a file it is plain
    text, as ``docker ps`` prints: a header line, then one line per row,
    columns padded with spaces, no box and no colour, for ``grep`` and ``less``.
    """
    count = 0
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(v) for v in row])
            count += 1
    elif fmt == "json":
        sys.stdout.write("[")
        separator = "\n  "
        for row in rows:
            count += 1
            obj = dict(zip(columns, (plain(v) for v in row)))
            sys.stdout.write(separator + json.dumps(obj, ensure_ascii=False))
            separator = ",\n  "
        sys.stdout.write("]\n" if separator == "\n  " else "\n]\n")
    else:
        cells = [[cell(v, c in sizes) for c, v in zip(columns, row)] for row in rows]
        count = len(cells)
        if sys.stdout.isatty():
            _rich_table(columns, cells)
        else:
            _plain_table(columns, cells)
    return count


def _rich_table(columns: Sequence[str], cells: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, show_edge=False, header_style="bold")
    for row in cells:
        table.add_row(*map(Text, row))  # Text: brackets in names and values are not rich markup
    console().print(table)


def _plain_table(columns: Sequence[str], cells: list[list[str]]) -> None:
    lines = [list(columns), *([c.translate(_ONE_LINE) for c in row] for row in cells)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    sys.stdout.writelines("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n" for line in lines)


#: A plain table's row is one line: the characters that would break it are written as escapes.
_ONE_LINE = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def figure(value: Any, size: bool = False) -> str:
    """A computed number for people: six significant digits, sizes in KiB/MiB/GiB."""
    return f"{value:.6g}" if isinstance(value, float) else cell(value, size)


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bytes, dict, list)):
        return json.dumps(plain(value), ensure_ascii=False)
    return value


def emit_mapping(mapping: dict[str, Any], fmt: str) -> None:
    """A flat dict (stats, gc): key/value rows, or one JSON object."""
    if fmt == "json":
        click.echo(json.dumps({k: plain(v) for k, v in mapping.items()}, indent=2))
        return
    sizes = {k for k in mapping if k.endswith("bytes") or k == "bytes_reclaimed"}
    rows = [(k, figure(v, k in sizes) if fmt == "table" else v) for k, v in mapping.items()]
    emit(("key", "value"), rows, fmt)
