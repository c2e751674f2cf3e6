"""Named components of the pipeline's stages: one registry type behind every ``register_*``.

Probe strategies, signatures, similarities and scan engines are each looked up by name in a
:class:`Components` table; a class decorator registers one and stamps its ``name``. Both it
and the schemes' table are a :class:`Table`, whose *providers* (modules that register more
entries when imported, and import the table's module to do so) are imported on its first
read: the module that defines a table never imports them.

>>> from abc import ABC
>>> class Stage(ABC):
...     name = ""
>>> STAGES: Components[Stage] = Components("stage")
>>> @STAGES.register("plain")
... class Plain(Stage):
...     def __init__(self, size=1):
...         self.size = size
>>> STAGES.create("plain", size=3).size, Plain.name
(3, 'plain')
>>> STAGES.create("fancy")
Traceback (most recent call last):
...
KeyError: "Unknown stage 'fancy'; registered: ['plain']."
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, TypeVar, overload

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

T = TypeVar("T")
V = TypeVar("V")
D = TypeVar("D")


class Table(Dict[str, V]):
    """Name -> one kind of thing (``kind``, for messages), looked up with :meth:`lookup`.

    ``providers`` name modules that register entries when imported: they are imported on the
    table's first read (lookup, membership, iteration, length, views, ``get``), once.

    >>> table: Table[int] = Table("number", providers=("json",))
    >>> table["one"] = 1
    >>> table.lookup("one"), sorted(table)
    (1, ['one'])
    >>> table.lookup("two")
    Traceback (most recent call last):
    ...
    KeyError: "Unknown number 'two'; registered: ['one']."
    """

    def __init__(self, kind: str, providers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.kind = kind
        self._providers = providers

    def load(self) -> None:
        """Import the providers not imported yet (a read while they import sees the table so far)."""
        providers, self._providers = self._providers, ()
        try:
            for module in providers:
                importlib.import_module(module)
        except BaseException:
            self._providers = providers
            raise

    def lookup(self, name: str) -> V:
        """The entry ``name``; a :class:`KeyError` that lists the registered names otherwise."""
        if name not in self:
            raise KeyError(f"Unknown {self.kind} {name!r}; registered: {sorted(self)}.")
        return self[name]

    def __getitem__(self, name: str) -> V:
        if self._providers:
            self.load()
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        if self._providers:
            self.load()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        if self._providers:
            self.load()
        return super().__iter__()

    def __len__(self) -> int:
        if self._providers:
            self.load()
        return super().__len__()

    def __repr__(self) -> str:
        if self._providers:
            self.load()
        return super().__repr__()

    def keys(self) -> dict_keys[str, V]:
        if self._providers:
            self.load()
        return super().keys()

    def values(self) -> dict_values[str, V]:
        if self._providers:
            self.load()
        return super().values()

    def items(self) -> dict_items[str, V]:
        if self._providers:
            self.load()
        return super().items()

    @overload
    def get(self, name: str, default: None = None, /) -> V | None: ...

    @overload
    def get(self, name: str, default: V, /) -> V: ...

    @overload
    def get(self, name: str, default: D, /) -> V | D: ...

    def get(self, name: str, default: Any = None, /) -> Any:
        if self._providers:
            self.load()
        return super().get(name, default)

    def copy(self) -> dict[str, V]:
        if self._providers:
            self.load()
        return dict(super().items())


class Components(Table[type[T]]):
    """Name -> class of one kind of component."""

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: make a component available by ``name`` (and set its ``name``)."""
        def decorate(cls: type[T]) -> type[T]:
            cls.name = name  # type: ignore[attr-defined]
            self[name] = cls
            return cls
        return decorate

    def create(self, name: str, **params: Any) -> T:
        """The registered component ``name``, built with ``params``."""
        return self.lookup(name)(**params)


def register_named(table: dict[str, T], item: T, name: str, *, what: str, replace: bool, caller: str) -> T:
    """Put ``item`` in ``table`` under ``name`` (an existing name only with ``replace``): what
    the attack library's ``register_*`` functions share once they have checked their own fields."""
    from .errors import check_param

    check_param(f"{what}.name", name, "a name not registered yet (or replace=True)", replace or name not in table,
                caller=caller)
    table[name] = item
    return item


def named(table: dict[str, T], name: str, *, caller: str) -> T:
    """``table[name]``, or one :class:`~tafa.errors.InvalidParameter` line listing the names."""
    from .errors import InvalidParameter

    if name not in table:
        raise InvalidParameter(f"The 'name' parameter of {caller} must be one of {sorted(table)}. Got {name!r} "
                               "instead.")
    return table[name]
