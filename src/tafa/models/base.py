"""The one small interface every model answers, whatever it is opened from.

A :class:`Model` has an input shape and an output shape (of one sample), a batched
numpy-in / numpy-out call, and a query counter. Black-box verification uses nothing
else. White-box analysis of the owner additionally asks :meth:`Model.torch_module`,
which is ``None`` when the model cannot be imported into torch.

Only :class:`TorchModel` and the functions of torch modules need torch, and import it when
they run: a model answered elsewhere (an ONNX file in the sandbox, a service) is queried and
hashed with numpy alone, so ``tafa verify`` of such a suspect never imports torch.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NonFiniteOutput, ShapeMismatch

if TYPE_CHECKING:
    import torch

#: Largest magnitude of an answer tafa accepts: float32's range. Models are queried with float32
#: inputs; a bound keeps every signature and similarity computed from answers (squares, sums,
#: differences over small steps) finite in float64, so no arithmetic overflows on a hostile answer.
MAX_ANSWER = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Consistency:
    """How a service answered inputs asked a second time (see ``HttpModel(recheck=...)`` in
    :mod:`tafa.models.http`).

    A model is a function: the same input gets the same answer. A service that adds noise
    to its answers, or answers differently once it sees an input again (probe-aware), is
    not one fixed model, and a score measured on it says little.
    """

    planned: int  #: inputs the check meant to re-ask
    rechecked: int  #: inputs re-asked (fewer than planned where ``max_queries`` left no room)
    differing: int  #: re-asked inputs answered otherwise (beyond ``tolerance``)
    max_relative_difference: float  #: the largest :func:`~tafa.models.http.relative_difference` seen
    tolerance: float

    @property
    def consistent(self) -> bool | None:
        """``True``/``False`` once inputs were re-asked, ``None`` before."""
        return None if self.rechecked == 0 else self.differing == 0

    def note(self) -> str | None:
        """What a verdict should say about the service's consistency (``None``: nothing)."""
        if self.consistent is False:
            return (f"INCONSISTENT SERVICE: {self.differing} of {self.rechecked} re-asked inputs "
                    f"were answered differently (max relative difference "
                    f"{self.max_relative_difference:.3g} > {self.tolerance:g}): the service is "
                    f"noisy or adapts to its queries, so its score does not describe one fixed "
                    f"model and an 'independent' decision is not evidence")
        if self.planned > self.rechecked:
            return (f"consistency only partly checked: max_queries left room to re-ask "
                    f"{self.rechecked} of {self.planned} inputs")
        return None


class Model(ABC):
    """A model that answers batches of inputs with batches of outputs, counting queries.

    Besides the batched call, a model declares what callers may ask of it; the defaults here
    are those of a model held in memory, and the models that differ override them (a service,
    :class:`~tafa.models.http.HttpModel`: :attr:`labels_only`, :attr:`consistency`,
    :meth:`check_budget`; a file, :meth:`import_notice`).
    """

    #: Per-sample input and output shapes (without the batch axis).
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    #: Whether the model answers only a class label per input (as a float, of shape ``(1,)``).
    labels_only: bool = False
    #: How the model answered inputs asked a second time (``None``: it is not re-asked).
    consistency: Consistency | None = None

    def __init__(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                 *, name: str, batch_size: int = 256) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        self.name = name
        self.batch_size = int(batch_size)
        self.queries = 0

    @abstractmethod
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Answer one batch (``float32``, ``(b, *input_shape)``) with ``(b, *output_shape)``."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch of inputs, as float64; counts one query per input sample."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ShapeMismatch(f"{self.name} takes inputs of shape {self.input_shape}; "
                                f"the fingerprint queries with shape {x.shape[1:]}.")
        answers = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start:start + self.batch_size]
            out = np.asarray(self._forward(batch), dtype=np.float64)
            self.queries += len(batch)
            if out.shape != (len(batch), *self.output_shape):
                raise ShapeMismatch(f"{self.name} answered shape {out.shape[1:]} for inputs of shape "
                                    f"{self.input_shape}; expected {self.output_shape}.")
            usable = np.abs(out) <= MAX_ANSWER  # False for NaN too
            if not np.all(usable):
                raise NonFiniteOutput(f"{self.name} answered NaN or inf, or a number beyond +-{MAX_ANSWER:.3g} "
                                      f"(float32's range), for "
                                      f"{int((~usable).any(axis=tuple(range(1, out.ndim))).sum())}"
                                      f" of {len(batch)} inputs.")
            answers.append(out)
        if not answers:
            return np.zeros((0, *self.output_shape))
        return np.concatenate(answers)

    def torch_module(self) -> torch.nn.Module | None:
        """The model as a float torch module for white-box analysis, or ``None`` (black box)."""
        return None

    def import_notice(self) -> str | None:
        """Why the white-box import of the model's file failed, if it did (``None``: it did not,
        or there was nothing to import)."""
        return None

    def check_budget(self, queries: int | np.ndarray) -> int | None:
        """Refuse, before anything is asked, a run of ``queries`` (a number of inputs, or the
        inputs) that would pass the model's query budget. A model without one refuses nothing."""
        return None

    def content_hash(self) -> str:
        """SHA-256 identifying the model's content (file bytes or parameters)."""
        return ""

    def describe(self) -> dict[str, Any]:
        """What the model is, for reports."""
        return {"name": self.name, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "white_box": self.torch_module() is not None}


def module_hash(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in name order)."""
    import torch

    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        # flattened first: a 0-d buffer (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_hash(path: str, *, max_bytes: int | None = None) -> str:
    """SHA-256 of a regular file's bytes, read with byte counting: a device, a FIFO, or a file
    that yields more bytes than its size says (``/proc/self/pagemap`` says 0 and never ends)
    or than ``max_bytes`` is refused (:class:`~tafa.errors.ModelLoadError`)."""
    from ..errors import ModelLoadError
    from ..storage import open_regular

    with open_regular(path, lambda why: ModelLoadError(f"{path!r} {why}; refused.")) as (handle, size):
        limit = size if max_bytes is None else min(max_bytes, size)
        digest = hashlib.sha256()
        total = 0
        for block in iter(lambda: handle.read(1 << 20), b""):
            total += len(block)
            if total > limit:
                raise ModelLoadError(f"{path!r} holds more bytes than its size says (a kernel or growing file); "
                                     "refused.")
            digest.update(block)
    return digest.hexdigest()


class TorchModel(Model):
    """A torch ``nn.Module`` held in memory (evaluated in ``eval`` mode, without gradients)."""

    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], *,
                 name: str | None = None, batch_size: int = 256, white_box: bool = True,
                 output_shape: tuple[int, ...] | None = None, source_hash: str | None = None) -> None:
        import torch

        self.module = module.eval()
        self._white_box = white_box
        self._source_hash = source_hash
        if output_shape is None:
            output_shape, largest = _probe_shapes(self.module, tuple(input_shape))
            batch_size = activation_bounded(batch_size, largest, torch.finfo(module_dtype(module)).bits // 8)
        super().__init__(input_shape, output_shape, name=name or type(module).__name__,
                         batch_size=batch_size)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            tensor = torch.from_numpy(x).to(module_dtype(self.module))
            return self.module(tensor).double().numpy()

    def torch_module(self) -> torch.nn.Module | None:
        return self.module if self._white_box else None

    def content_hash(self) -> str:
        return self._source_hash or module_hash(self.module)


#: Bound on the activations of one batch of a :class:`TorchModel` (bytes): a network with large
#: feature maps (a ResNet-50 at 224x224: 0.8M values in its first maps, 20 per batch) answers in smaller
#: batches, so that memory stays bounded; small networks keep the full batch.
BATCH_ACTIVATION_BYTES = 256 * 2 ** 20


def activation_bounded(batch_size: int, largest: int, itemsize: int) -> int:
    """``batch_size`` reduced so that a few feature maps of each sample, which live at once (4 of
    the ``largest`` activation's values of ``itemsize`` bytes), fit :data:`BATCH_ACTIVATION_BYTES`."""
    return max(1, min(int(batch_size), BATCH_ACTIVATION_BYTES // max(1, 4 * largest * itemsize)))


def _probe_shapes(module: torch.nn.Module, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """One sample through ``module``: its output shape and the size of its largest activation
    (the largest output of a leaf module)."""
    import torch

    largest = [0]

    def record(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel())

    leaves = [] if isinstance(module, torch.jit.ScriptModule) else [  # TorchScript takes no hooks
        m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *input_shape), dtype=module_dtype(module)))
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor):
        raise ShapeMismatch(f"{type(module).__name__} returns {_described(out)}, not one tensor: tafa compares one "
                            "output; wrap the model so that its forward returns the tensor to fingerprint (its "
                            "logits, its prediction, its image).")
    return tuple(out.shape[1:]), max(largest[0], out.numel())


def _described(value: object) -> str:
    """What a module returned instead of a tensor, in a few words (``a tuple of 2 values``,
    ``a dict with keys 'logits', 'hidden'``)."""
    if isinstance(value, dict):
        keys = ", ".join(repr(key) for key in list(value)[:4])
        return f"a {type(value).__name__} with keys {keys}{', ...' if len(value) > 4 else ''}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a module's parameters (float32 if it has none)."""
    import torch

    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
