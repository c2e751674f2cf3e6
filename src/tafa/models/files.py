"""Opening model files safely: ONNX, TorchScript, safetensors (+ factory), torch state dicts.

Suspect files are untrusted: they come from someone who may want the check to fail or to
harm the checker. :func:`~tafa.models.open.open_model` never parses a model file in tafa's
own process: it checks that the path is a regular file (no device, no ``/proc``, no FIFO; read
with byte counting), hashes it, and hands it to a sandbox worker (:mod:`tafa.models.sandbox`,
:mod:`tafa.models.worker`), where :func:`load_file` (the in-process loader, for use *inside*
the sandbox only) inspects,
loads and runs it. Nothing here unpickles with Python's :mod:`pickle`, and every file is
inspected before the library that reads it is called:

- every file: larger than ``max_bytes`` (default :data:`MAX_FILE_BYTES`, ``--max-model-bytes``)
  is refused before it is parsed; a raw pickle (any protocol) is refused unread;
- ONNX: parsed by ``onnx`` without external data; declared input shapes bounded
  (:data:`MAX_ELEMENTS`) before anything is allocated; model-local functions inlined, then
  refused (:func:`~tafa.models.onnx_checks.check_onnx`) if any tensor refers to an external
  data file or any node uses an operator domain other than the standard ones (``""``,
  ``ai.onnx``, ``ai.onnx.ml``): a contrib operator cannot hide behind a decoy local function,
  nor a local function behind the name of a standard operator; checked by ``onnx.checker``;
  run by onnxruntime on the CPU with no custom-operator library;
- torch zip archives (state dicts and TorchScript): declared uncompressed sizes bounded,
  every pickle member bounded (:data:`MAX_PICKLE_BYTES`) and read in bounded chunks, and its
  opcodes read with :mod:`pickletools` (which parses, never executes) under an opcode budget
  (:data:`MAX_PICKLE_OPCODES`): an import outside the small set that real archives use
  (tensors, storages, ``OrderedDict``, TorchScript's own classes) is refused, as are pickle
  extension codes; a pickled ``nn.Module`` (``torch.save(model)``) is refused with how to
  export it safely;
- torch state dict: then ``torch.load(..., weights_only=True)``;
- TorchScript: refused unless ``allow_torchscript=True`` (``--allow-torchscript``); then its
  code text is screened (``__setstate__``, file operators, custom classes), and after
  ``torch.jit.load`` every operator of every method, forward hook and forward pre-hook of
  every submodule (calls inlined) must be in :data:`TORCHSCRIPT_OPERATORS`, an allow-list of
  what inference needs: no file or IO operators, no ``print``, no sparse constructors.

``factory`` is ``package.module:function`` (an installed module) or ``path/to/file.py:function``
(an explicit file): code *of the user's*, returning the ``nn.Module`` whose weights a
safetensors file or state dict holds. The current directory is never added to ``sys.path``.

Torch is imported by the loaders that need it (TorchScript, weights files) and not by this
module: the sandbox's ONNX workers (:mod:`tafa.models.worker`) run ONNX files without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
import os
import stat
import pickletools
import re
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ..errors import InputShapeRequired, ModelLoadError, ShapeMismatch, TafaError, UnsafeModelFile, one_line
from .base import Model, TorchModel, activation_bounded, file_hash
from .onnx_checks import ONNX_DOMAINS, RUNTIME_DOMAINS, check_onnx, shadows_standard_operator  # noqa: F401
from .zygote import MODEL_SUFFIXES, ONNX_SUFFIX  # noqa: F401 - MODEL_SUFFIXES: where importers find it

if TYPE_CHECKING:
    import torch

#: Largest model file opened (bytes) unless ``max_bytes`` says otherwise; larger files are
#: refused before parsing, and so are zip archives that declare more uncompressed bytes.
MAX_FILE_BYTES = 2 * 1024 ** 3

#: Most elements of one sample's input or output (2**24: a 3x2048x2048 image fits); larger
#: declared shapes are refused before anything is allocated.
MAX_ELEMENTS = 1 << 24

#: Bound on one batch of queries to a model file (bytes): its float32 inputs and the float64
#: answers expected, together; a sample larger than this is sent alone.
BATCH_BYTES = 64 * 2 ** 20

#: Most bytes of one pickle member of a torch archive (real ``data.pkl`` files are KBs to MBs).
MAX_PICKLE_BYTES = 64 * 1024 ** 2

#: Most pickle opcodes read from all members of one archive (about 2 s of inspection;
#: a state dict costs about 20 opcodes per tensor).
MAX_PICKLE_OPCODES = 2_000_000

#: Directories whose files are never opened as models (kernel interfaces and devices: their
#: sizes lie and reading them may never end).
_SPECIAL_ROOTS = ("/proc", "/sys", "/dev")

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

#: The operators a TorchScript program may use: what inference of a feed-forward, recurrent or
#: attention network needs (arithmetic, linear algebra, convolutions, pooling, normalisation,
#: activations, recurrent layers and cells, attention, shape and indexing operations, control
#: flow). Everything else is refused after loading and before the first forward pass: file and
#: IO operators (``aten::save``, ``aten::from_file``),
#: ``prim::Print``, sparse and quantized constructors (``aten::sparse_coo_tensor`` with
#: unchecked indices writes out of bounds), Python and remote calls, threads, custom classes.
TORCHSCRIPT_OPERATORS = frozenset(
    [f"aten::{name}" for name in """
    add add_ sub sub_ mul mul_ div div_ neg abs sign pow sqrt rsqrt exp log log1p expm1 reciprocal
    floor ceil round trunc frac remainder fmod floor_divide clamp clamp_ clamp_min clamp_min_ clamp_max
    clamp_max_ maximum minimum max min sum mean prod var std norm cumsum logsumexp amax amin argmax argmin
    matmul mm bmm addmm addmv mv dot linear bilinear einsum outer baddbmm
    conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d _convolution convolution
    max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices avg_pool1d avg_pool2d
    avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
    adaptive_max_pool2d lp_pool1d lp_pool2d
    batch_norm layer_norm group_norm instance_norm native_layer_norm native_batch_norm local_response_norm
    relu relu_ relu6 leaky_relu leaky_relu_ hardtanh hardtanh_ elu elu_ selu celu gelu silu silu_ mish
    sigmoid sigmoid_ tanh tanh_ softmax log_softmax softplus softsign hardsigmoid hardswish prelu
    threshold threshold_ logsigmoid glu tanhshrink softshrink hardshrink rrelu _softmax _log_softmax
    dropout dropout_ feature_dropout alpha_dropout feature_alpha_dropout
    flatten unflatten view view_as reshape reshape_as permute transpose transpose_ t contiguous squeeze
    squeeze_ unsqueeze unsqueeze_ expand expand_as repeat repeat_interleave tile flip roll
    cat concat stack hstack vstack split split_with_sizes chunk unbind slice select index_select narrow
    gather index masked_fill masked_fill_ where clone detach to type_as float double half int long bool
    size dim numel len __getitem__ __contains__ __is__ __isnot__ __not__ __and__ __or__ __xor__ __round_to_zero_floordiv
    eq ne lt le gt ge logical_and logical_or logical_not isnan isinf isfinite nan_to_num
    zeros zeros_like ones ones_like full full_like arange linspace eye tensor scalar_tensor
    pad constant_pad_nd reflection_pad1d reflection_pad2d replication_pad1d replication_pad2d
    upsample_nearest1d upsample_nearest2d upsample_bilinear2d upsample_linear1d interpolate
    pixel_shuffle pixel_unshuffle channel_shuffle embedding one_hot sort topk
    lstm gru rnn_relu rnn_tanh lstm_cell gru_cell rnn_relu_cell rnn_tanh_cell unsafe_chunk unsafe_split
    scaled_dot_product_attention _native_multi_head_attention _transformer_encoder_layer_fwd
    all any is_floating_point is_grad_enabled is_autocast_enabled
    Int Float Bool IntImplicit FloatImplicit ScalarImplicit Scalar item dtype device
    append extend insert list copy_ fill_ zero_ format warn floordiv
    """.split()]
    + [f"prim::{name}" for name in """
    Constant ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex DictConstruct GetAttr If Loop
    NumToTensor ImplicitTensorToNum device dtype layout shape is_cuda RaiseException unchecked_cast
    Uninitialized min max abs requires_grad data isinstance TupleSlice ConstantChunk Return is_nested type
    """.split()]
)

#: Text in a TorchScript archive's code that is refused before anything is loaded.
_TORCHSCRIPT_CODE_REFUSED = [
    (re.compile(r"__setstate__"), "defines __setstate__ (code that would run while loading)"),
    (re.compile(r"\bfrom_file\b"), "calls torch.from_file (reads and writes files)"),
    (re.compile(r"\b(?:torch|aten)\s*\.\s*save\b"), "calls torch.save (writes files)"),
    (re.compile(r"\btorch\s*\.\s*classes\b"), "uses a custom C++ class (torch.classes)"),
    (re.compile(r"(?<![\w.])ops\s*\.\s*(?!aten\b|prim\b)\w+"),
     "calls an operator outside the aten and prim namespaces"),
]


#: The input element types an ONNX file may declare, and the array type its queries are sent in (a
#: network exported in half precision takes float16; its answers come back as float32).
ONNX_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


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
            _check_declared_inputs(proto, path, input_shape)
            onnx.checker.check_model(proto)
            if len(proto.functions):
                # a node that names a local function runs that function's body, never a runtime
                # kernel of the same domain and name (a decoy function cannot smuggle a contrib op)
                from onnx.inliner import inline_local_functions

                proto = inline_local_functions(proto)
                check_onnx(proto, path)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 4  # errors become exceptions; nothing is printed
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"])
            inputs = self._session.get_inputs()
            if len(inputs) != 1:
                raise ModelLoadError(f"{path!r} has {len(inputs)} inputs; tafa verifies single-input models.")
            self._input_name = inputs[0].name
            element = str(inputs[0].type)
            if element not in ONNX_INPUT_TYPES:
                *others, last = (name[len("tensor("):-1] for name in ONNX_INPUT_TYPES)
                asked = f"{', '.join(others)} or {last}"
                raise ModelLoadError(f"{path!r} takes {element[:40]} inputs; tafa asks {asked} inputs.")
            self._input_type = ONNX_INPUT_TYPES[element]
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
        check_shape(input_shape, "input", path)
        batch = 1 if fixed_batch and declared[0] == 1 else batch_size
        self._import_error: str | None = None
        self._module: torch.nn.Module | None = None
        super().__init__(input_shape, (), name=Path(path).name, batch_size=batch)
        self.output_shape = tuple(self._forward(np.zeros((1, *input_shape), dtype=np.float32)).shape[1:])
        check_shape(self.output_shape, "output", path)
        self.batch_size = activation_bounded(bounded_batch(self.batch_size, self.input_shape, self.output_shape),
                                             _largest_activation(proto), 4)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            with _quiet():
                answers = np.asarray(self._session.run(None, {self._input_name: x.astype(self._input_type,
                                                                                          copy=False)})[0])
                return answers.astype(np.float32) if answers.dtype == np.float16 else answers
        except Exception as error:
            raise ModelLoadError(f"{self.name} failed to run ({_brief(error)}).") from None

    def torch_module(self) -> torch.nn.Module | None:
        if self._module is None and self._import_error is None:
            from .onnx_import import check_reproduces, import_onnx

            try:
                module = import_onnx(self._proto).float()
                check_reproduces(module, self._forward, self.input_shape)
                self._module = module
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


def check_shape(shape: tuple[int, ...], what: str, path: str) -> None:
    """Refuse a per-sample shape with more than :data:`MAX_ELEMENTS` elements (or a negative axis)."""
    elements = 1
    for size in shape:
        if not isinstance(size, int) or size < 1:
            raise ShapeMismatch(f"{path!r} has {what} shape {tuple(shape)}; every axis must be an integer >= 1.")
        elements *= size
        if elements > MAX_ELEMENTS:
            raise ShapeMismatch(f"{path!r} has {what} shape {tuple(shape)}, more than {MAX_ELEMENTS} elements per "
                                "sample; refused before allocating it.")


def bounded_batch(batch_size: int, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """``batch_size`` reduced so that one batch's float32 inputs and float64 answers hold at most
    :data:`BATCH_BYTES` (at least one sample)."""
    per_sample = 4 * int(np.prod(input_shape, dtype=np.int64)) + 8 * int(np.prod(output_shape, dtype=np.int64))
    return max(1, min(int(batch_size), BATCH_BYTES // max(1, per_sample)))


def _largest_activation(proto: Any) -> int:
    """Values per sample of the largest intermediate tensor of an ONNX graph whose shape ONNX's
    shape inference tells (every axis after the batch axis known; 0 when none is)."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - a graph inference cannot read: bounded by inputs and outputs alone
        return 0
    largest = 0
    for value in inferred.graph.value_info:
        axes = value.type.tensor_type.shape.dim[1:]
        if axes and all(axis.HasField("dim_value") and axis.dim_value > 0 for axis in axes):
            largest = max(largest, math.prod(int(axis.dim_value) for axis in axes))
    return largest


def _check_declared_inputs(proto: Any, path: str, given: tuple[int, ...] | None) -> None:
    """Bound the per-sample input shapes an ONNX graph declares, before a session allocates them."""
    initialized = {tensor.name for tensor in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initialized:
            continue
        dims = value.type.tensor_type.shape.dim
        fixed = tuple(int(d.dim_value) for d in dims[1:] if d.HasField("dim_value"))
        if len(fixed) == len(dims) - 1 and fixed:
            check_shape(fixed, "declared input", path)
    if given is not None:
        check_shape(tuple(given), "input", path)


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
                import torch

                from .onnx_import import check_reproduces, import_onnx

                buffer = io.BytesIO()
                torch.onnx.export(self.module, (torch.zeros(1, *self.input_shape),),
                                  buffer,  # type: ignore[arg-type]  # torch accepts a file-like object
                                  dynamo=False, input_names=["x"], output_names=["y"])
                imported = import_onnx(onnx.load_model_from_string(buffer.getvalue())).float()
                check_reproduces(imported, self._forward, self.input_shape)
                self._imported = imported
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
    """The callable named by ``package.module:function`` (imported from ``sys.path`` as it is:
    the current directory is never added) or ``path/to/file.py:function`` (that file only)."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise ModelLoadError(f"Factory {spec!r} must be written 'package.module:function' or "
                             "'path/to/file.py:function'.")
    try:
        if module_name.endswith(".py"):
            location = Path(module_name).expanduser().absolute()
            if not location.is_file():
                raise ModelLoadError(f"Factory file {str(location)!r} does not exist.")
            loader_spec = importlib.util.spec_from_file_location(f"tafa_factory_{location.stem}", location)
            if loader_spec is None or loader_spec.loader is None:
                raise ModelLoadError(f"Cannot import factory file {str(location)!r}.")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attribute)
    except TafaError:
        raise
    except (ImportError, AttributeError, SyntaxError) as error:
        raise ModelLoadError(f"Cannot import factory {spec!r} ({_brief(error)}).") from None
    if not callable(factory):
        raise ModelLoadError(f"Factory {spec!r} is not callable.")
    return factory


def check_path(path: Path, max_bytes: int) -> int:
    """The size of ``path`` if it is a regular file of at most ``max_bytes`` bytes outside
    ``/proc``, ``/sys`` and ``/dev`` (symbolic links are followed, their target is checked);
    else :class:`~tafa.errors.ModelLoadError`."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelLoadError(f"Model file {str(path)!r} does not exist.") from None
    except OSError as error:
        raise ModelLoadError(f"Model file {str(path)!r} cannot be read ({_brief(error)}).") from None
    target = os.path.realpath(path)
    if not stat.S_ISREG(info.st_mode) or any(target == root or target.startswith(root + "/")
                                             for root in _SPECIAL_ROOTS):
        raise ModelLoadError(f"Model file {str(path)!r} is not a regular file (it is or points to {target!r}); "
                             "refused.")
    if info.st_size > max_bytes:
        raise ModelLoadError(f"Model file {str(path)!r} is larger than {max_bytes} bytes (--max-model-bytes); "
                             "refused.")
    return info.st_size


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


def sniff(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix == ONNX_SUFFIX:
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


def pickle_imports(data: bytes, budget: list[int] | None = None) -> list[str]:
    """Every import (``module.name``) a pickle would make, read from its opcodes, never executed.

    ``budget`` (a one-element list, decremented in place) bounds the opcodes read: an
    archive whose pickles need more is refused (:class:`UnsafeModelFile`). Raises
    :class:`UnsafeModelFile` for what cannot be resolved statically (a ``STACK_GLOBAL``
    whose names are not plain strings pushed just before it, extension codes) and
    :class:`ModelLoadError` for a damaged opcode stream.
    """
    imports: list[str] = []
    recent: list[Any] = []  # what the last opcodes pushed, as far as a static reading can tell
    memo: dict[Any, Any] = {}
    budget = [MAX_PICKLE_OPCODES] if budget is None else budget
    try:
        for opcode, argument, _ in pickletools.genops(data):
            budget[0] -= 1
            if budget[0] < 0:
                raise UnsafeModelFile(f"pickles hold more than {MAX_PICKLE_OPCODES} opcodes")
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
                if isinstance(recent[-1] if recent else None, str):
                    memo[argument] = recent[-1]
            elif name == "MEMOIZE":
                if isinstance(recent[-1] if recent else None, str):
                    memo[len(memo)] = recent[-1]
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


#: Modules whose classes a pickled ``nn.Module`` (``torch.save(model)``) imports.
_PICKLED_MODULE = re.compile(r"^(?:torch\.nn\.modules\.|__main__\.|torch\.nn\.parameter\.)")


def _read_member(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, read in chunks and counted: at most ``limit`` whatever the zip declares."""
    chunks, total = [], 0
    with archive.open(entry) as stream:
        while chunk := stream.read(1 << 20):
            total += len(chunk)
            if total > limit or total > entry.file_size:
                raise UnsafeModelFile(f"member {entry.filename!r} inflates to more than it declares or than "
                                      f"{limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def inspect_archive(path: str | os.PathLike[str], *, torchscript: bool, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Check a torch zip archive without loading it (see the module doc); raise
    :class:`UnsafeModelFile` for what would run code, :class:`ModelLoadError` for damage."""
    text = str(path)
    allowed = TORCHSCRIPT_GLOBALS if torchscript else STATE_DICT_GLOBALS
    budget = [MAX_PICKLE_OPCODES]
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
                        if entry.file_size > MAX_PICKLE_BYTES:
                            raise UnsafeModelFile(f"a pickle declares {entry.file_size} bytes, more than "
                                                  f"{MAX_PICKLE_BYTES}")
                        imports = pickle_imports(_read_member(archive, entry, MAX_PICKLE_BYTES), budget)
                    except TafaError as error:
                        raise type(error)(f"{text!r}: {error} in {member!r}; refused without running it.") from None
                    refused = sorted({name for name in imports if not _allowed(name, allowed, torchscript)})
                    if refused and not torchscript and any(_PICKLED_MODULE.match(name) for name in refused):
                        raise UnsafeModelFile(
                            f"{text!r} is a pickled torch module (torch.save(model)), refused: loading it would run "
                            f"code ({', '.join(refused[:2])}). Export it safely: save_file(model.state_dict(), "
                            "'model.safetensors') and open it with --factory, or torch.onnx.export(model, x, "
                            "'model.onnx', dynamo=False).")
                    if refused:
                        raise UnsafeModelFile(f"{text!r} holds a pickle ({member!r}) that imports "
                                              f"{', '.join(refused[:3])}; refused without running it.")
                elif torchscript and member.endswith(".py") and "code/" in member:
                    code = _read_member(archive, entry, MAX_PICKLE_BYTES).decode("utf-8")
                    for pattern, reason in _TORCHSCRIPT_CODE_REFUSED:
                        if pattern.search(code):
                            raise UnsafeModelFile(f"{text!r} is TorchScript whose code ({member!r}) {reason}; "
                                                  "refused before loading.")
    except TafaError:
        raise
    except Exception as error:
        raise ModelLoadError(f"{text!r} is a damaged archive ({_brief(error)}).") from None


def _graphs(module: torch.jit.ScriptModule) -> Iterator[Any]:
    """Every method graph of ``module`` and its submodules, forward hooks and pre-hooks included."""
    for _, submodule in module.named_modules():
        scripted = submodule._c
        for method in scripted._method_names():
            yield scripted._get_method(method).graph
        for hook in [*scripted._get_forward_pre_hooks(), *scripted._get_forward_hooks()]:
            yield hook.graph


def torchscript_operators(module: torch.jit.ScriptModule) -> set[str]:
    """Every operator kind in every method graph, forward hook and forward pre-hook of
    ``module`` and its submodules (calls inlined)."""
    import torch

    kinds: set[str] = set()
    for graph in _graphs(module):
        graph = graph.copy()
        torch._C._jit_pass_inline(graph)
        nodes = list(graph.nodes())
        while nodes:
            node = nodes.pop()
            kinds.add(node.kind())
            for block in node.blocks():
                nodes.extend(block.nodes())
    return kinds


def _check_torchscript_operators(module: torch.jit.ScriptModule, text: str) -> None:
    refused = sorted(torchscript_operators(module) - TORCHSCRIPT_OPERATORS)
    if refused:
        raise UnsafeModelFile(f"{text!r} is TorchScript that calls {', '.join(refused[:3])}, outside the operators "
                              "inference needs; refused before running it.")


def _load_torchscript(text: str, input_shape: tuple[int, ...], max_bytes: int) -> "ScriptModel":
    import torch

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
    import torch

    if kind == "state_dict":
        inspect_archive(path, torchscript=False, max_bytes=max_bytes)
    if factory is None:
        raise ModelLoadError(f"{str(path)!r} holds only weights; name the architecture with "
                             "--factory package.module:function (or path/to/file.py:function).")
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


def load_file(path: str, *, factory: str | None = None, input_shape: tuple[int, ...] | None = None,
              allow_torchscript: bool = False, batch_size: int = 256, max_bytes: int = MAX_FILE_BYTES) -> Model:
    """Inspect, load and check a model file **in this process**: the sandbox worker's loader
    (:mod:`tafa.models.worker`). Library users call :func:`~tafa.models.open.open_model`, which
    runs this in a sandbox; calling it directly runs the file's program (TorchScript, ONNX
    kernels) in the caller's process."""
    text = str(path)
    file = Path(text)
    check_path(file, max_bytes)
    if input_shape is not None:
        check_shape(tuple(int(s) for s in input_shape), "input", text)
    kind = sniff(file)
    if kind == "onnx":
        return OnnxModel(text, input_shape=input_shape, batch_size=batch_size)
    if kind == "torchscript":
        if not allow_torchscript:
            raise UnsafeModelFile(f"{text!r} is TorchScript (a program), refused by default; pass "
                                  "--allow-torchscript (allow_torchscript=True) to inspect it and run it in the "
                                  "sandbox.")
        if input_shape is None:
            raise InputShapeRequired(f"{text!r} is TorchScript, which does not declare its input shape; "
                                     "pass --input-shape.")
        return _load_torchscript(text, tuple(input_shape), max_bytes)
    module = _module_from_weights(file, kind, factory, max_bytes)
    if input_shape is None:
        raise InputShapeRequired(f"{text!r} holds weights only; pass --input-shape.")
    try:
        with _quiet():
            model = TorchModel(module, tuple(input_shape), name=file.name, batch_size=batch_size,
                               source_hash=file_hash(text))
    except TafaError:
        raise
    except Exception as error:  # the factory's architecture does not take this input shape
        raise ShapeMismatch(f"Factory {factory!r} does not take inputs of shape {tuple(input_shape)} "
                            f"({_brief(error)}).") from None
    check_shape(model.output_shape, "output", text)
    return model


def check_links(folder: Path, files: list[Path]) -> None:
    """Refuse any of ``files`` that is a symbolic link leading outside ``folder``."""
    inside = os.path.realpath(folder).rstrip("/") + "/"
    for path in files:
        target = os.path.realpath(path)
        if not target.startswith(inside):
            raise ModelLoadError(f"{str(path)!r} is a link to {target!r}, outside {str(folder)!r}; refused.")
