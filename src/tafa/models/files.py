"""Opening model files safely: ONNX, TorchScript, safetensors (+ factory), torch state dicts.

Suspect files are untrusted: they come from someone who may want the check to fail or to
harm the checker. Nothing here unpickles with Python's :mod:`pickle`, and every file is
inspected before the library that reads it is called:

- every file: larger than ``max_bytes`` (default :data:`MAX_FILE_BYTES`, ``--max-model-bytes``)
  is refused before it is parsed; a raw pickle (any protocol) is refused unread;
- ONNX: parsed by ``onnx`` without external data, then refused if any tensor refers to an
  external data file or any node uses an operator domain other than the standard ones
  (``""``, ``ai.onnx``, ``ai.onnx.ml``; model-local functions allowed); checked by
  ``onnx.checker``; run by onnxruntime on the CPU with no custom-operator library;
- torch zip archives (state dicts and TorchScript): the declared uncompressed size is
  bounded, and the opcodes of every pickle in the archive are read with
  :mod:`pickletools` (which parses, never executes): an import outside the small set that
  real archives use (tensors, storages, ``OrderedDict``, TorchScript's own classes) is
  refused, as are pickle extension codes;
- torch state dict: then ``torch.load(..., weights_only=True)``;
- TorchScript: then its code (text in ``code/``) is refused if it defines ``__setstate__``
  (code run while loading), names a file operator (``from_file``, ``save``), a custom C++
  class or an operator namespace other than ``aten``/``prim``; after ``torch.jit.load``
  every operator in every method graph is checked the same way before the model is run.
  Running a TorchScript model runs its TorchScript program: no Python, no files, but it can
  loop or allocate; ``allow_torchscript=False`` (the command line's default; ``--allow-torchscript``
  lifts it) refuses TorchScript altogether.

``factory`` is ``package.module:function``: importable code *of the user's*, returning the
``nn.Module`` whose weights a safetensors file or state dict holds.
"""

from __future__ import annotations

import importlib
import io
import os
import pickletools
import re
import sys
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import (InputShapeRequired, ModelLoadError, ShapeMismatch, TafaError, UnsafeModelFile, check_param,
                      one_line)
from .base import Model, TorchModel, file_hash

#: Largest model file opened (bytes) unless ``max_bytes`` says otherwise; larger files are
#: refused before parsing, and so are zip archives that declare more uncompressed bytes.
MAX_FILE_BYTES = 2 * 1024 ** 3

MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ts", ".jit", ".safetensors", ".tsm")

#: ONNX operator domains run by onnxruntime's own kernels from the ONNX standard.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

#: Imports a torch state-dict pickle may make (what ``torch.save`` writes for tensors,
#: parameters and storages of every dtype); anything else is refused before torch sees it.
STATE_DICT_GLOBALS = frozenset({
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
})

#: Imports a TorchScript archive's pickles may make, on top of tensors and storages: what
#: torch 2.13 writes (``data.pkl``, ``constants.pkl``, ``traced_inputs.pkl``, ``*.debug_pkl``)
#: and the TorchScript unpickler's own list builders. ``__torch__.*`` names are the archive's
#: own TorchScript classes (compiled from ``code/``, checked there), except custom C++ classes.
TORCHSCRIPT_GLOBALS = frozenset({
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.jit._pickle.restore_type_tag",
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist", "torch.jit._pickle.build_tensor_from_id",
})

_STORAGE = re.compile(r"^torch\.[A-Za-z0-9]+Storage$")
_TORCHSCRIPT_CLASS = re.compile(r"^__torch__\.(?!torch\.classes\.)[\w.]+$")

#: TorchScript operators refused in a TorchScript program: those that read or write files.
TORCHSCRIPT_FILE_OPERATORS = frozenset({"aten::from_file", "aten::save"})

#: TorchScript ``prim`` operators refused: Python calls, remote calls, threads.
TORCHSCRIPT_REFUSED_PRIMS = frozenset({
    "prim::PythonOp", "prim::rpc_async", "prim::rpc_sync", "prim::rpc_remote", "prim::fork", "prim::awaitable",
})

#: Text in a TorchScript archive's code that is refused before anything is loaded.
_TORCHSCRIPT_CODE_REFUSED = [
    (re.compile(r"__setstate__"), "defines __setstate__ (code that would run while loading)"),
    (re.compile(r"\bfrom_file\b"), "calls torch.from_file (reads and writes files)"),
    (re.compile(r"\b(?:torch|aten)\s*\.\s*save\b"), "calls torch.save (writes files)"),
    (re.compile(r"\btorch\s*\.\s*classes\b"), "uses a custom C++ class (torch.classes)"),
    (re.compile(r"(?<![\w.])ops\s*\.\s*(?!aten\b|prim\b)\w+"),
     "calls an operator outside the aten and prim namespaces"),
]


class OnnxModel(Model):
    """An ONNX file run by onnxruntime on the CPU; white-box via :mod:`.onnx_import` when it can.

    Refused before a session is created: external data references, operator domains outside
    :data:`ONNX_DOMAINS` (custom operators), models ``onnx.checker`` rejects.
    """

    def __init__(self, path: str, *, input_shape: tuple[int, ...] | None = None, batch_size: int = 256) -> None:
        import onnx
        import onnxruntime

        self.path = path
        self._hash = file_hash(path)
        try:
            with _quiet():
                proto = onnx.load_model(path, load_external_data=False)
            check_onnx(proto, path)
            onnx.checker.check_model(proto)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 4  # errors become exceptions; nothing is printed
            self._session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"])
            inputs = self._session.get_inputs()
            if len(inputs) != 1:
                raise ModelLoadError(f"{path!r} has {len(inputs)} inputs; tafa verifies single-input models.")
            self._input_name = inputs[0].name
            declared = list(inputs[0].shape)  # names of symbolic axes come from the file: may not decode
        except TafaError:
            raise
        except Exception as error:
            raise ModelLoadError(f"{path!r} is not a loadable ONNX model ({_brief(error)}).") from None
        self._proto = proto
        if not declared:
            raise ShapeMismatch(f"{path!r} takes a scalar input; tafa needs a batch axis.")
        fixed_batch = isinstance(declared[0], int) and declared[0] > 0
        stated = tuple(declared[1:])
        if all(isinstance(s, int) and s > 0 for s in stated):
            if input_shape is not None and tuple(input_shape) != stated:
                raise ShapeMismatch(f"{path!r} declares input shape {stated}, not {tuple(input_shape)}.")
            input_shape = stated
        if input_shape is None:
            raise InputShapeRequired(f"{path!r} does not declare its input shape; pass --input-shape.")
        batch = 1 if fixed_batch and declared[0] == 1 else batch_size
        self._import_error: str | None = None
        self._module: torch.nn.Module | None = None
        super().__init__(input_shape, (), name=Path(path).name, batch_size=batch)
        self.output_shape = tuple(self._forward(np.zeros((1, *input_shape), dtype=np.float32)).shape[1:])

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            with _quiet():
                return np.asarray(self._session.run(None, {self._input_name: x})[0])
        except Exception as error:
            raise ModelLoadError(f"{self.name} failed to run ({_brief(error)}).") from None

    def torch_module(self) -> torch.nn.Module | None:
        if self._module is None and self._import_error is None:
            from .onnx_import import import_onnx

            try:
                self._module = import_onnx(self._proto).float()
            except ModelLoadError as error:
                self._import_error = str(error)
            except Exception as error:  # a malformed graph the importer did not foresee: black box
                self._import_error = _brief(error)
        return self._module

    def import_notice(self) -> str | None:
        """Why the white-box import failed, if it did."""
        self.torch_module()
        return self._import_error

    def content_hash(self) -> str:
        return self._hash


def check_onnx(proto: Any, path: str = "the ONNX model") -> None:
    """Refuse (:class:`UnsafeModelFile`) an ONNX model that refers to external data files or
    uses operators outside :data:`ONNX_DOMAINS` (model-local functions aside)."""
    from onnx import AttributeProto, TensorProto

    local = {(function.domain, function.name) for function in proto.functions}

    def tensors_of(attribute: Any) -> list[Any]:
        found = []
        if attribute.type == AttributeProto.TENSOR:
            found.append(attribute.t)
        elif attribute.type == AttributeProto.TENSORS:
            found.extend(attribute.tensors)
        elif attribute.type == AttributeProto.SPARSE_TENSOR:
            found.extend([attribute.sparse_tensor.values, attribute.sparse_tensor.indices])
        elif attribute.type == AttributeProto.SPARSE_TENSORS:
            for sparse in attribute.sparse_tensors:
                found.extend([sparse.values, sparse.indices])
        return found

    def check_tensor(tensor: Any) -> None:
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "?")
            raise UnsafeModelFile(f"{path!r} refers to an external data file ({location!r}) for tensor "
                                  f"{tensor.name!r}; tafa opens self-contained ONNX files only.")

    def check_nodes(nodes: Any) -> None:
        for node in nodes:
            if node.domain not in ONNX_DOMAINS and (node.domain, node.op_type) not in local:
                raise UnsafeModelFile(f"{path!r} uses operator {node.op_type!r} of custom domain "
                                      f"{node.domain!r}; tafa runs standard ONNX operators only.")
            for attribute in node.attribute:
                for tensor in tensors_of(attribute):
                    check_tensor(tensor)
                if attribute.type == AttributeProto.GRAPH:
                    check_graph(attribute.g)
                elif attribute.type == AttributeProto.GRAPHS:
                    for graph in attribute.graphs:
                        check_graph(graph)

    def check_graph(graph: Any) -> None:
        for tensor in graph.initializer:
            check_tensor(tensor)
        for sparse in graph.sparse_initializer:
            check_tensor(sparse.values)
            check_tensor(sparse.indices)
        check_nodes(graph.node)

    check_graph(proto.graph)
    for function in proto.functions:
        check_nodes(function.node)


class ScriptModel(TorchModel):
    """A TorchScript file; white-box through an ONNX export and import when the ops allow."""

    def __init__(self, path: str, module: torch.jit.ScriptModule, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, input_shape, name=Path(path).name, white_box=False, source_hash=file_hash(path))
        self._imported: torch.nn.Module | None = None
        self._import_error: str | None = None

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            with _quiet():
                return np.asarray(super()._forward(x))
        except Exception as error:  # the program in the file failed: that is the file's fault
            raise ModelLoadError(f"{self.name} failed to run ({_brief(error)}).") from None

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


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Python warnings raised while parsing or running an untrusted file: the file
    chooses what they say, and the command line owes its user one line per error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)}"


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


def _check_size(path: Path, max_bytes: int) -> None:
    if not path.is_file():
        raise ModelLoadError(f"Model file {str(path)!r} does not exist.")
    if path.stat().st_size > max_bytes:
        raise ModelLoadError(f"Model file {str(path)!r} is larger than {max_bytes} bytes (--max-model-bytes); "
                             "refused.")


def _is_pickle(path: Path) -> bool:
    """Whether the file parses as a pickle opcode stream (read, never executed)."""
    with open(path, "rb") as handle:
        data = handle.read(1 << 20)
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name == "STOP":
                return True
    except Exception:
        return False
    return False


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
        except Exception:
            raise ModelLoadError(f"{str(path)!r} is a damaged zip archive.") from None
        if any("/code/" in name or name.startswith("code/") for name in names):
            return "torchscript"
        return "state_dict"
    if head[:1] == b"\x80" or _is_pickle(path):
        raise UnsafeModelFile(f"{str(path)!r} is a raw pickle, refused: tafa never unpickles a model file "
                              "(save weights as safetensors or ONNX).")
    raise ModelLoadError(f"Cannot tell the format of {str(path)!r}; expected ONNX (.onnx), TorchScript, "
                         "safetensors (.safetensors) or a torch state dict.")


def pickle_imports(data: bytes) -> list[str]:
    """Every import (``module.name``) a pickle would make, read from its opcodes, never executed.

    Raises :class:`UnsafeModelFile` for what cannot be resolved statically (a ``STACK_GLOBAL``
    whose names are not plain strings pushed just before it, extension codes) and
    :class:`ModelLoadError` for a damaged opcode stream.
    """
    imports: list[str] = []
    recent: list[Any] = []  # what the last opcodes pushed, as far as a static reading can tell
    memo: dict[Any, Any] = {}
    try:
        for opcode, argument, _ in pickletools.genops(data):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                module, _, attribute = str(argument).partition(" ")
                imports.append(f"{module}.{attribute}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or not all(isinstance(v, str) for v in recent[-2:]):
                    raise UnsafeModelFile("a pickle imports a name it builds at run time (STACK_GLOBAL)")
                imports.append(f"{recent[-2]}.{recent[-1]}")
                recent.append(None)
            elif name.startswith("EXT"):
                raise UnsafeModelFile("a pickle imports through the copyreg extension registry")
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                          "BINSTRING", "STRING"):
                recent.append(str(argument))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[argument] = recent[-1] if recent else None
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(argument))
            else:
                recent.append(None)
            del recent[:-2]
    except TafaError:
        raise
    except Exception as error:
        raise ModelLoadError(f"a pickle in the file is damaged ({_brief(error)})") from None
    return imports


def _allowed(name: str, allowed: frozenset[str], torchscript: bool) -> bool:
    return (name in allowed or bool(_STORAGE.match(name))
            or (torchscript and bool(_TORCHSCRIPT_CLASS.match(name))))


def inspect_archive(path: str | os.PathLike[str], *, torchscript: bool, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Check a torch zip archive without loading it (see the module doc); raise
    :class:`UnsafeModelFile` for what would run code, :class:`ModelLoadError` for damage."""
    text = str(path)
    allowed = TORCHSCRIPT_GLOBALS if torchscript else STATE_DICT_GLOBALS
    try:
        with zipfile.ZipFile(text) as archive:
            entries = archive.infolist()
            declared = sum(entry.file_size for entry in entries)
            if declared > max_bytes:
                raise UnsafeModelFile(f"{text!r} declares {declared} uncompressed bytes, more than "
                                      f"{max_bytes} (--max-model-bytes); refused.")
            for entry in entries:
                member = entry.filename
                if member.endswith((".pkl", ".debug_pkl")):
                    try:
                        imports = pickle_imports(archive.read(entry))
                    except TafaError as error:
                        raise type(error)(f"{text!r}: {error} in {member!r}; refused without running it.") from None
                    refused = sorted({name for name in imports if not _allowed(name, allowed, torchscript)})
                    if refused:
                        raise UnsafeModelFile(f"{text!r} holds a pickle ({member!r}) that imports "
                                              f"{', '.join(refused[:3])}; refused without running it.")
                elif torchscript and member.endswith(".py") and "code/" in member:
                    code = archive.read(entry).decode("utf-8")
                    for pattern, reason in _TORCHSCRIPT_CODE_REFUSED:
                        if pattern.search(code):
                            raise UnsafeModelFile(f"{text!r} is TorchScript whose code ({member!r}) {reason}; "
                                                  "refused before loading.")
    except TafaError:
        raise
    except Exception as error:
        raise ModelLoadError(f"{text!r} is a damaged archive ({_brief(error)}).") from None


def torchscript_operators(module: torch.jit.ScriptModule) -> set[str]:
    """Every operator kind in every method graph of ``module`` and its submodules (calls inlined)."""
    kinds: set[str] = set()
    for _, submodule in module.named_modules():
        for method in submodule._c._method_names():
            graph = submodule._c._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)
            nodes = list(graph.nodes())
            while nodes:
                node = nodes.pop()
                kinds.add(node.kind())
                for block in node.blocks():
                    nodes.extend(block.nodes())
    return kinds


def _check_torchscript_operators(module: torch.jit.ScriptModule, text: str) -> None:
    kinds = torchscript_operators(module)
    refused = sorted(kind for kind in kinds if kind in TORCHSCRIPT_FILE_OPERATORS or kind in TORCHSCRIPT_REFUSED_PRIMS
                     or kind.split("::")[0] not in ("aten", "prim"))
    if refused:
        raise UnsafeModelFile(f"{text!r} is TorchScript that calls {', '.join(refused[:3])}; refused before "
                              "running it.")


def _load_torchscript(text: str, input_shape: tuple[int, ...], max_bytes: int) -> "ScriptModel":
    inspect_archive(text, torchscript=True, max_bytes=max_bytes)
    try:
        with _quiet():
            module = torch.jit.load(text, map_location="cpu")
    except Exception as error:
        raise ModelLoadError(f"{text!r} is not a loadable TorchScript file ({_brief(error)}).") from None
    try:
        _check_torchscript_operators(module, text)
        with _quiet():
            return ScriptModel(text, module.eval(), tuple(input_shape))
    except TafaError:
        raise
    except Exception as error:  # the program in the file failed on a zero input
        raise ModelLoadError(f"{text!r} does not run as a model of input shape {tuple(input_shape)} "
                             f"({_brief(error)}).") from None


def _module_from_weights(path: Path, kind: str, factory: str | None, max_bytes: int) -> torch.nn.Module:
    if factory is None:
        raise ModelLoadError(f"{str(path)!r} holds only weights; name the architecture with "
                             "--factory package.module:function.")
    if kind == "state_dict":
        inspect_archive(path, torchscript=False, max_bytes=max_bytes)
    module = load_factory(factory)()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"Factory {factory!r} returned {type(module).__name__}, not a torch.nn.Module.")
    try:
        with _quiet():
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
        with _quiet():
            module.load_state_dict(state, strict=True)
    except Exception as error:
        raise ModelLoadError(f"Weights in {str(path)!r} do not fit factory {factory!r} ({_brief(error)}).") from None
    return module.float().eval()


def open_model(spec: str | os.PathLike[str], *, factory: str | None = None,
               input_shape: tuple[int, ...] | None = None, allow_torchscript: bool = True,
               batch_size: int = 256, max_bytes: int = MAX_FILE_BYTES, **http_options: Any) -> Model:
    """Open a model from a file path or a KServe v2 URL (``http(s)://HOST:PORT/v2/models/NAME``).

    Files are untrusted (see the module doc): any refusal or damage raises a
    :class:`~tafa.errors.ModelLoadError` (:class:`~tafa.errors.UnsafeModelFile` when the file
    would run code); ``max_bytes`` bounds the file size.
    """
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from .http import HttpModel

        return HttpModel(text, batch_size=batch_size, **http_options)
    check_param("max_bytes", max_bytes, "an integer >= 1", isinstance(max_bytes, int) and max_bytes >= 1,
                caller="open_model")
    path = Path(text)
    _check_size(path, max_bytes)
    kind = _sniff(path)
    if kind == "onnx":
        return OnnxModel(text, input_shape=input_shape, batch_size=batch_size)
    if kind == "torchscript":
        if not allow_torchscript:
            raise UnsafeModelFile(f"{text!r} is TorchScript, refused in strict mode (the default; "
                                  "--allow-torchscript runs its TorchScript program).")
        if input_shape is None:
            raise InputShapeRequired(f"{text!r} is TorchScript, which does not declare its input shape; "
                                "pass --input-shape.")
        return _load_torchscript(text, tuple(input_shape), max_bytes)
    module = _module_from_weights(path, kind, factory, max_bytes)
    if input_shape is None:
        raise InputShapeRequired(f"{text!r} holds weights only; pass --input-shape.")
    try:
        return TorchModel(module, tuple(input_shape), name=path.name, batch_size=batch_size,
                          source_hash=file_hash(text))
    except TafaError:
        raise
    except Exception as error:  # the factory's architecture does not take this input shape
        raise ShapeMismatch(f"Factory {factory!r} does not take inputs of shape {tuple(input_shape)} "
                            f"({_brief(error)}).") from None


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
