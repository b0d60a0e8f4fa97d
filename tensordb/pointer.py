"""JSON Pointers (RFC 6901), the addresses of nodes inside a tree.

``"/data/inlet/points"`` walks the keys ``data``, ``inlet``, ``points``;
list items are addressed by index (``"/0/data"``); a key holding ``/`` or
``~`` is escaped as ``~1`` and ``~0``; ``""`` is the root.

Example
-------
>>> from tensordb import pointer
>>> pointer.join(["data", "a/b"])
'/data/a~1b'
>>> pointer.split("/data/a~1b")
['data', 'a/b']
"""

from __future__ import annotations

from .trees.paths import escape, join, split, unescape

__all__ = ["escape", "unescape", "split", "join"]
