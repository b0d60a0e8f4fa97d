"""What the commands share: the error boundary, the shared options, opening a database and reading addresses."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

import tensordb
import tensordb.pointer

from .output import one_line

F = TypeVar("F", bound=Callable[..., Any])

#: The errors that mean bad input or a bad file (not a bug): reported as one line, without a traceback.
#: A builtin error (KeyError, ValueError, TypeError, IndexError) is a bug unless the command expected it from
#: the user's input at that very spot and said so with ``bad_input``; a bug keeps its traceback.
EXPECTED = (tensordb.TensorDBError, OSError)


def _debugging() -> bool:
    """Whether ``--debug`` asked for tracebacks instead of one-line errors."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.find_root().params.get("debug"))


def _message(exc: BaseException) -> str:
    # KeyError's str() quotes its message; show it as written.
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def errors_as_messages(fn: F) -> F:
    """The one error boundary: tensordb and OS errors become a one-line ClickException."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED as exc:
            if _debugging():
                raise
            raise click.ClickException(one_line(_message(exc))) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def bad_input(what: str | None = None) -> Iterator[None]:
    """Builtin errors raised in this block come from what the user typed: one line (exit 1), naming ``what``.

    Wrap only the call that takes the user's input (an address, a ``--slice``, a destination), so that the same
    errors anywhere else still show as the bugs they are, with their traceback.
    """
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        if _debugging():
            raise
        message = _message(exc)
        if what and not message.startswith(what):
            message = f"{what}: {message}"
        raise click.ClickException(one_line(message)) from exc


class TroubleExit2(click.ClickException):
    """An error of a command whose exit code 1 is an answer: it exits 2."""

    exit_code = 2


def trouble_exits_2(fn: F) -> F:
    """For commands whose exit code 1 means an answer (diff: "they differ"), errors exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.UsageError:
            raise  # exits 2 already, and shows the usage
        except click.ClickException as exc:
            raise TroubleExit2(exc.format_message()) from None

    return wrapper  # type: ignore[return-value]


def quiet_option(fn: F) -> F:
    """``--quiet``: no progress bar (there is none anyway when stderr is not a terminal)."""
    return click.option("--quiet", "-q", is_flag=True, help="Show no progress bar.")(fn)


def output_options(fn: F) -> F:
    """``--format table|csv|json``, shared by the commands that print rows."""
    return click.option(
        "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
        help="table (for people: drawn on a terminal, plain columns in a pipe), csv (RFC 4180) or json "
             "(a list of objects).",
    )(fn)


def at_option(fn: F) -> F:
    """``--at SNAPSHOT``: read the database as of a snapshot (its id or a tag)."""
    return click.option("--at", metavar="SNAPSHOT",
                        help="Read DB as of this snapshot (its id or a tag; see tensordb log).")(fn)


def open_read(path: str, at: str | None = None) -> tensordb.Database:
    """``path`` read-only: its current state, or its state at snapshot ``at``."""
    try:
        return tensordb.open(path, mode="r", at=at)
    except KeyError as exc:  # only ``at`` can name nothing here
        raise click.BadParameter(_message(exc), param_hint="'--at'") from None


def snapshot_named(database: tensordb.Database, ref: str) -> tensordb.Snapshot:
    """The snapshot a command-line argument names: a tag, or an id (digits); ``KeyError`` if none."""
    tagged = database.tags().get(ref)
    if tagged is not None:
        return tagged
    for snapshot in database.history() if (ref.isascii() and ref.isdigit()) else ():
        if snapshot.id == int(ref):
            return snapshot
    raise KeyError(f"{database.filename}: no snapshot or tag {ref!r} (see tensordb log)")


def resolve(database: tensordb.Database, address: str) -> tuple[str, str]:
    """(tree name, JSON Pointer): the longest prefix of ``address`` that names a tree, and the rest."""
    return database.split_address(address)


def lookup(database: tensordb.Database, name: str, pointer: str) -> Any:
    """What the address designates: a Node, an Array or a scalar."""
    tree = database[name]
    return tree.root if pointer == "" else tree[pointer]


def address_of(name: str, pointer: str) -> str:
    return name + pointer


def last_key(pointer: str) -> str:
    return tensordb.pointer.unescape(pointer.rpartition("/")[2])


def trees_under(database: tensordb.Database, prefix: str) -> list[str]:
    """The names of the trees that start with ``prefix``, sorted."""
    rows = database.sql("SELECT name FROM trees WHERE substr(name, 1, length(?)) = ? ORDER BY name", (prefix, prefix))
    return [name for (name,) in rows]
