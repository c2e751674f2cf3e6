"""Opening model files safely: ONNX, TorchScript, safetensors (+ factory), torch state dicts.

Suspect files are untrusted. Nothing here unpickles: ONNX is read by onnx/onnxruntime
(with a size limit and no custom-operator libraries), safetensors by safetensors, a torch
state dict by ``torch.load(..., weights_only=True)`` (which refuses any pickled object that
is not a tensor), and TorchScript by ``torch.jit.load``, which runs the TorchScript program
in the file but no Python code (strict mode, ``allow_torchscript=False``, refuses it).

``factory`` is ``package.module:function``: importable code *of the user's*, returning the
``nn.Module`` whose weights a safetensors file or state dict holds.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ModelLoadError, ShapeMismatch, UnsafeModelFile
from .base import Model, TorchModel, file_hash

#: Largest model file opened (bytes); larger files are refused before parsing.
MAX_FILE_BYTES = 2 * 1024 ** 3

MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ts", ".jit", ".safetensors", ".tsm")


class OnnxModel(Model):
    """An ONNX file run by onnxruntime on the CPU; white-box via :mod:`.onnx_import` when it can."""

    def __init__(self, path: str, *, input_shape: tuple[int, ...] | None = None, batch_size: int = 256) -> None:
        import onnx
        import onnxruntime

        self.path = path
        self._hash = file_hash(path)
        try:
            proto = onnx.load_model(path, load_external_data=False)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ModelLoadError(f"{path!r} is not a loadable ONNX model ({_brief(error)}).") from None
        self._proto = proto
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{path!r} has {len(inputs)} inputs; tafa verifies single-input models.")
        self._input_name = inputs[0].name
        declared = inputs[0].shape
        fixed_batch = isinstance(declared[0], int) and declared[0] > 0
        stated = tuple(declared[1:])
        if all(isinstance(s, int) and s > 0 for s in stated):
            if input_shape is not None and tuple(input_shape) != stated:
                raise ShapeMismatch(f"{path!r} declares input shape {stated}, not {tuple(input_shape)}.")
            input_shape = stated
        if input_shape is None:
            raise ShapeMismatch(f"{path!r} does not declare its input shape; pass --input-shape.")
        batch = 1 if fixed_batch and declared[0] == 1 else batch_size
        self._import_error: str | None = None
        self._module: torch.nn.Module | None = None
        super().__init__(input_shape, (), name=Path(path).name, batch_size=batch)
        self.output_shape = tuple(self._forward(np.zeros((1, *input_shape), dtype=np.float32)).shape[1:])

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._session.run(None, {self._input_name: x})[0]
        except Exception as error:
            raise ModelLoadError(f"{self.name} failed to run ({_brief(error)}).") from None

    def torch_module(self) -> torch.nn.Module | None:
        if self._module is None and self._import_error is None:
            from .onnx_import import import_onnx

            try:
                self._module = import_onnx(self._proto).float()
            except ModelLoadError as error:
                self._import_error = str(error)
        return self._module

    def import_notice(self) -> str | None:
        """Why the white-box import failed, if it did."""
        self.torch_module()
        return self._import_error

    def content_hash(self) -> str:
        return self._hash


class ScriptModel(TorchModel):
    """A TorchScript file; white-box through an ONNX export and import when the ops allow."""

    def __init__(self, path: str, module: torch.jit.ScriptModule, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, input_shape, name=Path(path).name, white_box=False, source_hash=file_hash(path))
        self._imported: torch.nn.Module | None = None
        self._import_error: str | None = None

    def torch_module(self) -> torch.nn.Module | None:
        if self._imported is None and self._import_error is None:
            try:
                import onnx

                from .onnx_import import import_onnx

                buffer = io.BytesIO()
                torch.onnx.export(self.module, (torch.zeros(1, *self.input_shape),), buffer, dynamo=False,
                                  input_names=["x"], output_names=["y"])
                self._imported = import_onnx(onnx.load_model_from_string(buffer.getvalue())).float()
            except Exception as error:  # export or import failed: black box it is
                self._import_error = _brief(error)
        return self._imported

    def import_notice(self) -> str | None:
        self.torch_module()
        return self._import_error


def _brief(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def load_factory(spec: str) -> Callable[[], torch.nn.Module]:
    """The callable named by ``package.module:function``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ModelLoadError(f"Factory {spec!r} must be written 'package.module:function'.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ModelLoadError(f"Cannot import factory {spec!r} ({_brief(error)}).") from None
    if not callable(factory):
        raise ModelLoadError(f"Factory {spec!r} is not callable.")
    return factory


def _check_size(path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"Model file {str(path)!r} does not exist.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ModelLoadError(f"Model file {str(path)!r} is larger than {MAX_FILE_BYTES} bytes; refused.")


def _sniff(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".safetensors":
        return "safetensors"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise ModelLoadError(f"{str(path)!r} is a damaged zip archive.") from None
        if any("/code/" in name or name.startswith("code/") for name in names):
            return "torchscript"
        return "state_dict"
    if head[:1] == b"\x80":
        raise UnsafeModelFile(f"{str(path)!r} is a raw pickle; tafa never unpickles a model file "
                              "(save weights as safetensors or ONNX).")
    raise ModelLoadError(f"Cannot tell the format of {str(path)!r}; expected ONNX (.onnx), TorchScript, "
                         "safetensors (.safetensors) or a torch state dict.")


def _module_from_weights(path: Path, kind: str, factory: str | None) -> torch.nn.Module:
    if factory is None:
        raise ModelLoadError(f"{str(path)!r} holds only weights; name the architecture with "
                             "--factory package.module:function.")
    module = load_factory(factory)()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"Factory {factory!r} returned {type(module).__name__}, not a torch.nn.Module.")
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error).lower()
        if kind == "state_dict" and ("weights only" in message or "weights_only" in message or "unpickl" in message):
            raise UnsafeModelFile(f"{str(path)!r} holds pickled objects beyond tensors; refused without "
                                  "running them (tafa loads torch files with weights_only=True).") from None
        raise ModelLoadError(f"Cannot read weights from {str(path)!r} ({_brief(error)}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{str(path)!r} is not a state dict of tensors.")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelLoadError(f"Weights in {str(path)!r} do not fit factory {factory!r} ({_brief(error)}).") from None
    return module.float().eval()


def open_model(spec: str | os.PathLike[str], *, factory: str | None = None,
               input_shape: tuple[int, ...] | None = None, allow_torchscript: bool = True,
               batch_size: int = 256, **http_options: Any) -> Model:
    """Open a model from a file path or a KServe v2 URL (``http(s)://HOST:PORT/v2/models/NAME``)."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from .http import HttpModel

        return HttpModel(text, batch_size=batch_size, **http_options)
    path = Path(text)
    _check_size(path)
    kind = _sniff(path)
    if kind == "onnx":
        return OnnxModel(text, input_shape=input_shape, batch_size=batch_size)
    if kind == "torchscript":
        if not allow_torchscript:
            raise UnsafeModelFile(f"{text!r} is TorchScript, refused in strict mode (--no-torchscript).")
        if input_shape is None:
            raise ShapeMismatch(f"{text!r} is TorchScript, which does not declare its input shape; "
                                "pass --input-shape.")
        try:
            module = torch.jit.load(text, map_location="cpu")
        except Exception as error:
            raise ModelLoadError(f"{text!r} is not a loadable TorchScript file ({_brief(error)}).") from None
        return ScriptModel(text, module.eval(), tuple(input_shape))
    module = _module_from_weights(path, kind, factory)
    if input_shape is None:
        raise ShapeMismatch(f"{text!r} holds weights only; pass --input-shape.")
    return TorchModel(module, tuple(input_shape), name=path.name, batch_size=batch_size, source_hash=file_hash(text))


def open_models(directory: str | os.PathLike[str], **options: Any) -> list[Model]:
    """Every model file in ``directory`` (sorted by name), opened with :func:`open_model`."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ModelLoadError(f"Reference directory {str(folder)!r} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
    if not files:
        raise ModelLoadError(f"Reference directory {str(folder)!r} holds no model files "
                             f"({', '.join(MODEL_SUFFIXES)}).")
    return [open_model(path, **options) for path in files]
