"""JSON Pointers (RFC 6901): the address of a node inside a tree.

``""`` is the root, ``"/data/points"`` a nested key, ``"/0/data"`` the key
``data`` of a list's first element; ``~0`` and ``~1`` escape ``~`` and ``/``
inside keys, so ``"/a~1b"`` is the key ``"a/b"`` and ``"/"`` the key ``""``.

Example
-------
>>> split("/data/a~1b/0")
['data', 'a/b', '0']
>>> join(["data", "a/b"])
'/data/a~1b'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["escape", "unescape", "split", "join", "child", "parent", "is_pointer", "subtree_bounds"]

_BAD_ESCAPE = re.compile(r"~(?![01])")


def escape(key: str) -> str:
    """One reference token for ``key``."""
    return key.replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    if _BAD_ESCAPE.search(token):
        raise ValueError(f"invalid JSON Pointer escape in {token!r} ('~' must be followed by 0 or 1)")
    return token.replace("~1", "/").replace("~0", "~")


def is_pointer(key: object) -> bool:
    """Whether an index key is a JSON Pointer (``""`` or starting with ``/``) rather than one dict key."""
    return isinstance(key, str) and (key == "" or key.startswith("/"))


def split(pointer: str) -> list[str]:
    """The keys a pointer walks through."""
    if not isinstance(pointer, str):
        raise TypeError(f"a JSON Pointer must be a str, got {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"invalid JSON Pointer {pointer!r}: must be empty or start with '/'")
    return [unescape(t) for t in pointer[1:].split("/")]


def join(keys: Iterable[str]) -> str:
    return "".join("/" + escape(k) for k in keys)


def child(path: str, key: str | int) -> str:
    return f"{path}/{escape(key) if isinstance(key, str) else key}"


def parent(path: str) -> tuple[str, str]:
    """``(parent pointer, last token unescaped)`` of a non-root pointer."""
    head, _, token = path.rpartition("/")
    return head, unescape(token)


def subtree_bounds(path: str) -> tuple[str, str]:
    """Bounds such that descendants of ``path`` satisfy ``lo <= p < hi`` ('/' + 1 == '0')."""
    return path + "/", path + "0"
