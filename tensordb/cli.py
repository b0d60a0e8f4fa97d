"""The ``tensordb`` command line, a thin layer over the public API.

Every command reports bad input as one line on stderr and a non-zero exit
code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

import tensordb

from .demo import run_demo

F = TypeVar("F", bound=Callable[..., Any])


def _errors_as_messages(fn: F) -> F:
    """The one error boundary: tensordb and OS errors become a one-line ClickException."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except (tensordb.TensorDBError, OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(message) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tensordb.__version__, prog_name="tensordb")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """tensordb: JSON-like trees with numpy array leaves in one SQLite file.

    \b
    Example:
        tensordb demo
    """


@main.command()
@click.argument("path", default="tensordb-demo.tdb", type=click.Path(dir_okay=False))
@click.option("--sims", default=20, show_default=True, help="Number of simulations.")
@click.option("--steps", default=10, show_default=True, help="Time steps per simulation.")
@_errors_as_messages
def demo(path: str, sims: int, steps: int) -> None:
    """Build a demo database of synthetic CFD mesh samples and show what tensordb does.

    PATH is replaced if it exists (default: tensordb-demo.tdb).

    \b
    Example:
        tensordb demo /tmp/demo.tdb
    """
    console = Console(highlight=False)
    run_demo(path, sims, steps, say=console.print)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
