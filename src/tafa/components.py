"""Named components of the pipeline's stages: one registry type behind every ``register_*``.

Probe strategies, signatures, similarities and scan engines are each looked up by name in a
:class:`Components` table; a class decorator registers one and stamps its ``name``.

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

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Components(dict, Generic[T]):
    """Name -> class of one kind of component."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: make a component available by ``name`` (and set its ``name``)."""
        def decorate(cls: type[T]) -> type[T]:
            cls.name = name  # type: ignore[attr-defined]
            self[name] = cls
            return cls
        return decorate

    def create(self, name: str, **params: Any) -> T:
        """The registered component ``name``, built with ``params``."""
        if name not in self:
            raise KeyError(f"Unknown {self.kind} {name!r}; registered: {sorted(self)}.")
        return self[name](**params)
