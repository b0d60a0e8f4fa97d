"""The base of tensordb's small immutable value classes (:class:`~tensordb.Codec`, :class:`~tensordb.Snapshot`).

They are values users compare, hash, print and pickle, which is what a frozen
dataclass gives. Importing ``dataclasses`` imports ``inspect``, though: about
5 ms of every fresh process, more than opening a database takes. So the few
classes on the paths that open a database, read and write use this base.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Frozen"]


class Frozen:
    """Fields named by ``__slots__``, set once by :meth:`_assign`; equality, hash, repr and pickling by field."""

    __slots__: tuple[str, ...] = ()

    def _assign(self, *values: object) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a {type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if type(other) is type(self) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(self.__slots__, self._fields()))
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self._fields()
