"""How models are opened: one set of options, one set of defaults, for every caller.

:class:`OpenOptions` is what ``tafa fingerprint``, ``tafa verify``, ``tafa registry add``
and ``tafa scan`` are given on the command line (one argparse group, ``tafa.cli.options``),
what a scan stores with its record so that a resumed scan opens its suspects the same way,
and what the library takes: :meth:`OpenOptions.open` opens a file or a service,
:meth:`OpenOptions.open_folder` every model file of a folder.

>>> options = OpenOptions(input_shape=[1, 8, 8], retries=0)
>>> options.input_shape, options.allow_torchscript, options.timeout
((1, 8, 8), False, 20.0)
>>> OpenOptions.from_dict(options.to_dict()) == options
True
>>> OpenOptions(batch_size=0)
Traceback (most recent call last):
...
tafa.errors.InvalidParameter: The 'batch_size' parameter of OpenOptions must be an integer >= 1. Got 0 instead.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import InputShapeRequired, InvalidParameter, ModelLoadError, check_param

if TYPE_CHECKING:
    from .base import Model

#: ``package.module:function`` (an installed module) or ``path/to/file.py:function`` (that file;
#: the current directory is never searched): a model named by the code that builds it
#: (weights in ``weights``).
#: Model files of a folder opened at once (each waits on its own sandbox worker loading its file).
OPEN_THREADS = 4

FACTORY_SPEC = re.compile(r"^(?:[A-Za-z_][\w.]*|[^:]+\.py):[A-Za-z_]\w*$")


def absolute_factory(spec: str) -> str:
    """``arch.py:cnn`` -> ``/working/directory/arch.py:cnn``: a ``path/to/file.py:function``
    factory with its file made absolute against the current working directory, at once: models
    are opened in a sandbox whose working directory is a temporary folder, and references are
    trained in worker processes, where a relative path would name nothing (or something else).
    ``package.module:function`` (imported from ``sys.path``) and anything else as given.

    >>> absolute_factory("mypkg.nets:decoder")
    'mypkg.nets:decoder'
    >>> absolute_factory("/models/arch.py:cnn")
    '/models/arch.py:cnn'
    """
    module, colon, function = spec.rpartition(":")
    if not colon or not module.endswith(".py"):
        return spec
    return f"{Path(module).expanduser().absolute()}:{function}"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class OpenOptions:
    """How to open a model file or a model behind a KServe v2 service.

    Files: ``factory`` (``package.module:function``) builds the ``nn.Module`` of a weights-only
    file (safetensors, state dict); ``weights`` is that file when the model itself is named by
    its factory; ``input_shape`` is needed only by files that do not declare theirs
    (TorchScript, weights-only files): when it is ``None`` the caller's ``input_shapes`` are
    tried (a fingerprint's owner shape, a registry's shapes); ``allow_torchscript`` runs
    TorchScript programs (off by default); ``max_bytes`` refuses larger files unread
    (``None``: :func:`~tafa.models.open_model`'s limit).

    Services (see :class:`~tafa.models.http.HttpModel`): ``timeout`` seconds for one whole
    request (a late answer is not asked again), ``retries`` after a 429/502/503/504 answer or
    a lost connection, waiting ``backoff`` seconds (doubled each time) but never more than ``max_wait`` in all
    for one request; ``rate`` requests per second, at most ``max_queries`` inputs sent;
    ``answer_cache`` a folder where answers are kept and reused.

    ``batch_size``: inputs per call to any model.
    """

    factory: str | None = None
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None
    allow_torchscript: bool = False
    batch_size: int = 256
    max_bytes: int | None = None
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    max_wait: float = 20.0
    rate: float | None = None
    max_queries: int | None = None
    answer_cache: str | None = None

    def __post_init__(self) -> None:
        caller = "OpenOptions"
        check_param("factory", self.factory, "None, package.module:function or path/to/file.py:function",
                    self.factory is None or (isinstance(self.factory, str) and bool(FACTORY_SPEC.match(self.factory))),
                    caller=caller)
        if self.factory is not None:  # resolved where the options are made, not in the sandbox
            object.__setattr__(self, "factory", absolute_factory(self.factory))
        if self.input_shape is not None:
            shape = self.input_shape
            check_param("input_shape", shape, "None or a sequence of integers >= 1",
                        isinstance(shape, (tuple, list)) and len(shape) >= 1
                        and all(_integer(s) and s >= 1 for s in shape), caller=caller)
            object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        check_param("allow_torchscript", self.allow_torchscript, "True or False",
                    isinstance(self.allow_torchscript, bool), caller=caller)
        check_param("batch_size", self.batch_size, "an integer >= 1",
                    _integer(self.batch_size) and self.batch_size >= 1, caller=caller)
        check_param("max_bytes", self.max_bytes, "None or an integer >= 1",
                    self.max_bytes is None or (_integer(self.max_bytes) and self.max_bytes >= 1), caller=caller)
        check_param("timeout", self.timeout, "a number of seconds > 0",
                    _number(self.timeout) and self.timeout > 0, caller=caller)
        check_param("retries", self.retries, "an integer >= 0",
                    _integer(self.retries) and self.retries >= 0, caller=caller)
        check_param("backoff", self.backoff, "a number of seconds >= 0",
                    _number(self.backoff) and self.backoff >= 0, caller=caller)
        check_param("max_wait", self.max_wait, "a number of seconds >= 0",
                    _number(self.max_wait) and self.max_wait >= 0, caller=caller)
        check_param("rate", self.rate, "None or a number of requests per second > 0",
                    self.rate is None or (_number(self.rate) and self.rate > 0), caller=caller)
        check_param("max_queries", self.max_queries, "None or an integer >= 0",
                    self.max_queries is None or (_integer(self.max_queries) and self.max_queries >= 0),
                    caller=caller)
        for name in ("weights", "answer_cache"):
            value = getattr(self, name)
            check_param(name, value, "None or a path", value is None or isinstance(value, (str, os.PathLike)),
                        caller=caller)
            if value is not None:
                object.__setattr__(self, name, str(value))

    # -- stored with a scan ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OpenOptions":
        """Options from :meth:`to_dict` (unknown keys, such as those of an older version, ignored)."""
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)

    def with_input_shape(self, shape: Sequence[int] | None) -> "OpenOptions":
        return replace(self, input_shape=None if shape is None else tuple(shape))

    # -- keyword arguments of the openers ----------------------------------------------------
    def file_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~tafa.models.open_model` for a file."""
        options: dict[str, Any] = {"factory": self.factory, "allow_torchscript": self.allow_torchscript,
                                   "batch_size": self.batch_size, "input_shape": self.input_shape}
        if self.max_bytes is not None:
            options["max_bytes"] = self.max_bytes
        return options

    def service_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~tafa.models.http.HttpModel` (``answer_cache`` is its
        ``cache_dir``)."""
        return {"batch_size": self.batch_size, "timeout": self.timeout, "retries": self.retries,
                "backoff": self.backoff, "max_wait": self.max_wait, "rate": self.rate,
                "max_queries": self.max_queries, "cache_dir": self.answer_cache}

    # -- opening -----------------------------------------------------------------------------
    def open(self, spec: str | os.PathLike[str], *, input_shapes: Sequence[Sequence[int]] = (),
             progress: bool = False) -> "Model":
        """Open a model file, a ``package.module:function`` factory (its weights in
        :attr:`weights`) or a service URL.

        A file that does not declare its input shape, when :attr:`input_shape` is not set, is
        tried with each of ``input_shapes`` in turn (a fingerprint's owner shape; the shapes
        of a registry); with none it raises :class:`~tafa.errors.InputShapeRequired`.
        """
        from . import open_model

        text = str(spec)
        if text.startswith(("http://", "https://")):
            return open_model(text, progress=progress, **self.service_options())
        options = self.file_options()
        if not Path(text).exists() and FACTORY_SPEC.match(text):
            if not self.weights:
                raise InvalidParameter(f"MODEL {text!r} is a factory; give its weights with "
                                       "--weights FILE.safetensors.")
            options["factory"], text = absolute_factory(text), self.weights
        if self.input_shape is not None or not input_shapes:
            return open_model(text, **options)
        try:
            return open_model(text, **{**options, "input_shape": None})
        except InputShapeRequired:
            pass
        shapes = list(dict.fromkeys(tuple(int(s) for s in shape) for shape in input_shapes))
        last: Exception | None = None
        for shape in shapes:
            try:
                return open_model(text, **{**options, "input_shape": shape})
            except Exception as error:  # noqa: BLE001 - a wrong shape fails in many ways; try the next
                last = error
        if len(shapes) == 1 and last is not None:
            raise last
        raise InputShapeRequired(f"{text!r} does not declare its input shape and runs on none of "
                                 f"{sorted(shapes)}; pass --input-shape.")

    def open_folder(self, directory: str | os.PathLike[str], *, input_shapes: Sequence[Sequence[int]] = (),
                    role: str = "Reference") -> list["Model"]:
        """Every model file in ``directory`` (sorted by name), opened with :meth:`open`; an error
        names the file and its ``role`` (``"Reference"``, ``"Positive"``)."""
        from ..errors import TafaError
        from .files import MODEL_SUFFIXES, check_links

        folder = Path(directory)
        if not folder.is_dir():
            raise ModelLoadError(f"{role} directory {str(folder)!r} does not exist.")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        if not files:
            raise ModelLoadError(f"{role} directory {str(folder)!r} holds no model files "
                                 f"({', '.join(MODEL_SUFFIXES)}).")
        check_links(folder, files)  # a link out of the folder (e.g. into /proc) is refused

        def opened(path: Path) -> "Model":
            try:
                return self.open(path, input_shapes=input_shapes)
            except TafaError as error:
                message = f"{role} model {str(path)!r}: {error}"
                try:
                    named = type(error)(message)
                except Exception:  # noqa: BLE001 - an error type built differently keeps its family
                    named = ModelLoadError(message)
                raise named from None

        # a few at once: each waits on its own sandbox worker loading its file (in order; the first
        # file that fails, in name order, is the one reported)
        with ThreadPoolExecutor(max_workers=OPEN_THREADS) as pool:
            return list(pool.map(opened, files))


__all__ = ["FACTORY_SPEC", "OpenOptions", "absolute_factory"]
