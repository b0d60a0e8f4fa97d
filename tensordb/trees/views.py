"""Views of a dict node's keys, values and items, like a dict's: they read the current children when used.

``node.keys() == {"a", "b"}``, ``"a" in node.keys()``, ``len(node.items())``
and iteration work as with a dict; nothing is read until then.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, Protocol

__all__ = ["NodeKeysView", "NodeValuesView", "NodeItemsView", "DictLike"]

_MISSING: Any = object()


class DictLike(Protocol):
    """What a view reads: a dict node, or a tree whose root is a dict (see :mod:`.handles`)."""

    def __len__(self) -> int: ...

    def get(self, key: Any, default: Any = None) -> Any: ...

    def _keys(self) -> list[str]: ...

    def _has_key(self, key: object) -> bool: ...

    def _pairs(self) -> list[tuple[str, Any]]: ...


class NodeKeysView(KeysView[str]):
    """The keys of a dict node, read when used (a set: ``==``, ``&``, ``|`` with sets work)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: DictLike) -> None:
        self._handle = handle

    def __len__(self) -> int:
        return len(self._handle)

    def __iter__(self) -> Iterator[str]:
        return iter(self._handle._keys())

    def __contains__(self, key: object) -> bool:
        return self._handle._has_key(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class NodeValuesView(ValuesView[Any]):
    """The values of a dict node, read when used (handles for containers and arrays)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: DictLike) -> None:
        self._handle = handle

    def __len__(self) -> int:
        return len(self._handle)

    def __iter__(self) -> Iterator[Any]:
        return iter([value for _, value in self._handle._pairs()])

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class NodeItemsView(ItemsView[str, Any]):
    """The ``(key, value)`` pairs of a dict node, read when used (one snapshot per iteration)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: DictLike) -> None:
        self._handle = handle

    def __len__(self) -> int:
        return len(self._handle)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._handle._pairs())

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2 or not self._handle._has_key(item[0]):
            return False
        key, value = item
        found = self._handle.get(key, _MISSING)
        return found is not _MISSING and (found is value or bool(found == value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"
