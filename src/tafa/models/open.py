"""Opening a model by what the user names: a KServe v2 URL becomes an
:class:`~tafa.models.http.HttpModel`; a file path is checked (a regular file, within the size
bound), hashed and handed to a sandbox worker (:class:`~tafa.models.sandbox.SandboxedModel`),
which opens it with the loaders of :mod:`tafa.models.files`. Nothing here parses a model file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError, check_param
from .base import Model, file_hash
from .files import MAX_FILE_BYTES, check_links, check_path, check_shape
from .options import absolute_factory
from .zygote import MODEL_SUFFIXES

if TYPE_CHECKING:
    from .sandbox import SandboxLimits


def open_model(spec: str | os.PathLike[str], *, factory: str | None = None,
               input_shape: tuple[int, ...] | None = None, allow_torchscript: bool = False,
               batch_size: int = 256, max_bytes: int = MAX_FILE_BYTES, sandbox_limits: SandboxLimits | None = None,
               **http_options: Any) -> Model:
    """Open a model from a file path or a KServe v2 URL (``http(s)://HOST:PORT/v2/models/NAME``).

    Files are untrusted (see the module doc): they are inspected, loaded and run in a
    sandbox worker (:class:`~tafa.models.sandbox.SandboxedModel`, limits from
    ``sandbox_limits``); any refusal, damage, crash, limit hit or timeout raises a
    :class:`~tafa.errors.ModelLoadError` (:class:`~tafa.errors.UnsafeModelFile` when the file
    would run code) naming the file; ``max_bytes`` bounds the file size. TorchScript is
    refused unless ``allow_torchscript=True``. A relative ``path/to/file.py:function``
    ``factory`` names a file in the current working directory (the sandbox runs elsewhere).
    """
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from .http import HttpModel

        return HttpModel(text, batch_size=batch_size, **http_options)
    check_param("max_bytes", max_bytes, "an integer >= 1", isinstance(max_bytes, int) and max_bytes >= 1,
                caller="open_model")
    check_param("batch_size", batch_size, "an integer >= 1", isinstance(batch_size, int) and batch_size >= 1,
                caller="open_model")
    path = Path(text).expanduser().absolute()
    size = check_path(path, max_bytes)
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        check_shape(input_shape, "input", text)
    from .sandbox import SandboxedModel

    content = file_hash(str(path), max_bytes=size)
    factory = None if factory is None else absolute_factory(str(factory))  # the sandbox runs elsewhere
    options = {"factory": factory, "input_shape": input_shape, "allow_torchscript": bool(allow_torchscript),
               "batch_size": batch_size, "max_bytes": max_bytes}
    return SandboxedModel(str(path), content, options, sandbox_limits)


def open_models(directory: str | os.PathLike[str], **options: Any) -> list[Model]:
    """Every model file in ``directory`` (sorted by name), opened with :func:`open_model`.

    Only regular files directly in the folder are opened: a symbolic link that points outside
    it, a device, a FIFO or a link into ``/proc`` is refused."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ModelLoadError(f"Reference directory {str(folder)!r} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES)
    if not files:
        raise ModelLoadError(f"Reference directory {str(folder)!r} holds no model files "
                             f"({', '.join(MODEL_SUFFIXES)}).")
    check_links(folder, files)
    return [open_model(path, **options) for path in files]
