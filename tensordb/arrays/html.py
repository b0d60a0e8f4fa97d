"""Small HTML and text renderings shared by the handles' reprs (notebooks call ``_repr_html_``).

``human_size`` is public as ``tensordb.human_size``; the command line prints sizes with it too.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["human_size", "html_table"]


def human_size(n: int) -> str:
    """A number of bytes for people, in binary units (what the reprs and the command line show).

    Parameters
    ----------
    n : int
        A number of bytes.

    Returns
    -------
    str
        ``"N B"`` below 1 KiB, else one decimal and KiB, MiB, GiB or TiB.

    Example
    -------
    >>> tensordb.human_size(1536)
    '1.5 KiB'
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def html_table(rows: Sequence[Sequence[object]], header: Sequence[str] = ()) -> str:
    """A plain HTML table, every cell escaped."""
    import html  # deferred: only notebooks render tables, and it costs 1 ms of every start-up

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"
