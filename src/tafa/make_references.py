"""Negative references made from the owner's own architectures and data: ``tafa references``.

The false-positive bound of a verdict rests on its references being independently trained
models of the same task and input shape (docs/references.md). :func:`make_references` trains
``count`` of them from one or more architecture factories (the user's code: a
``package.module:function`` or ``path/to/file.py:function`` returning an untrained
``nn.Module``; one that takes a ``width`` argument is also built at each of ``widths``) and
one data file (:func:`load_data`), each reference with its own seed (its initialisation and
its training order) on its own random part (``fraction``) of the data, with the project's one
training loop (:func:`tafa.training.fit`). Each is exported to ONNX, which ``--references``
opens with no factory and no ``--input-shape``, whatever the architecture, and written
atomically: a file with its final name is complete. A rerun with the same settings skips the
references already written (a larger ``count`` adds the missing ones); ``references.json`` in
the folder records the settings and each reference's seed, architecture and held-out quality,
and a rerun with other settings is refused rather than mixing two sets.

Whether a reference is "like a trained model" cannot be checked data-free when it is used, so
it is checked here, where the data is: a reference whose held-out quality is far below the
others' (:func:`low_quality`) is named (``tafa references`` warns), and ``min_quality``
refuses references below a bar (moved to ``refused/``, out of what ``--references`` reads).

``jobs > 1`` trains in ``spawn``-ed worker processes (a fresh interpreter each, one torch
thread each); a script that calls this with ``jobs > 1`` needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from .errors import InvalidParameter, ModelLoadError, ShapeMismatch, TafaError, check_param, is_integer, one_line
from .models.options import absolute_factory
from .storage import read_regular, strict_json, write_atomically

Task = Literal["classification", "regression"]
TASKS = ("classification", "regression")

#: Largest data file read (bytes), and the most bytes an ``.npz`` may declare uncompressed.
MAX_DATA_BYTES = 1 << 30
#: Fewest samples a data file must hold.
MIN_SAMPLES = 10
#: The record of settings and references in an output folder.
MANIFEST = "references.json"
MANIFEST_FORMAT = "tafa-references/1"
#: Largest manifest read back.
MAX_MANIFEST_BYTES = 16 << 20
#: A reference whose held-out quality is more than this below the median of the others' is
#: named in a warning (:func:`low_quality`): plainly unlike the trained models it stands for.
QUALITY_MARGIN = 0.1
#: Where ``min_quality`` moves the references it refuses (a subfolder: ``--references`` reads
#: only the files directly in the folder).
REFUSED = "refused"

__all__ = ["MANIFEST", "MAX_DATA_BYTES", "QUALITY_MARGIN", "MadeReferences", "ReferenceData", "ReferenceSettings",
           "infer_task", "load_data", "low_quality", "make_references", "plan_references"]


# ----------------------------------------------------------------------------------- the data file

@dataclass(frozen=True)
class ReferenceData:
    """Inputs ``x`` (float32, ``(n, *input_shape)``) and targets ``y`` (``(n,)`` or ``(n, k)``)
    read from ``source``, whose bytes hash to ``sha256``."""

    x: np.ndarray
    y: np.ndarray
    source: str
    sha256: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])


def load_data(path: str | os.PathLike[str], *, max_bytes: int = MAX_DATA_BYTES,
              input_shape: Sequence[int] | None = None, shape_source: str = "--input-shape") -> ReferenceData:
    """Read a data file: ``.npz`` with arrays ``x`` (inputs) and ``y`` (targets), or ``.csv``
    (numbers, an optional header row; the target in the last column). At most ``max_bytes`` are
    read (an ``.npz`` may declare no more uncompressed); nothing is unpickled. ``input_shape``
    reshapes each input (a CSV row of 64 numbers for a ``(1, 8, 8)`` network; ``shape_source`` says
    where that shape comes from in the message when it cannot). Every problem is
    one :class:`~tafa.errors.InvalidParameter` line naming the file."""
    name = f"Data file {str(path)!r}"
    suffix = Path(path).suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise InvalidParameter(f"{name} must be .npz (arrays x and y) or .csv (target in the last column); "
                               f"got a {suffix or 'suffix-less'} file.")
    raw = read_regular(path, limit=max_bytes, what="Data file")
    x, y = _read_npz(raw, name, max_bytes) if suffix == ".npz" else _read_csv(raw, name)
    if len(x) != len(y):
        raise InvalidParameter(f"{name} holds {len(x)} inputs but {len(y)} targets.")
    if len(x) < MIN_SAMPLES:
        raise InvalidParameter(f"{name} holds {len(x)} samples; at least {MIN_SAMPLES} are needed.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or x.ndim < 2:
        raise InvalidParameter(f"{name}: x must be (samples, ...) and y (samples,) or (samples, outputs); got x "
                               f"{list(x.shape)} and y {list(y.shape)}.")
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if math.prod(shape) != math.prod(x.shape[1:]):
            raise InvalidParameter(f"{name}: inputs of shape {list(x.shape[1:])} cannot be reshaped to {shape_source} "
                                   f"{','.join(map(str, shape))}.")
        x = x.reshape(len(x), *shape)
    for label, array in (("inputs", x), ("targets", y)):
        if not np.all(np.isfinite(array)):
            raise InvalidParameter(f"{name}: its {label} hold NaN or infinite values.")
    return ReferenceData(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float64),
                         str(path), hashlib.sha256(raw).hexdigest())


def _read_npz(raw: bytes, name: str, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        if declared > max_bytes:
            raise InvalidParameter(f"{name} declares {declared} bytes uncompressed; at most {max_bytes} are read.")
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise InvalidParameter(f"{name} must hold arrays 'x' (inputs) and 'y' (targets); it holds "
                                       f"{sorted(arrays.files)[:10]}.")
            x, y = arrays["x"], arrays["y"]
    except TafaError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:  # pickled arrays: ValueError
        raise InvalidParameter(f"{name} is not a readable .npz of numeric arrays ({one_line(error)}).") from None
    for label, array in (("x", x), ("y", y)):
        if array.dtype.kind not in "biuf":
            raise InvalidParameter(f"{name}: array {label!r} must hold real numbers; it holds {array.dtype}.")
    return x, y


def _read_csv(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameter(f"{name} is not UTF-8 text.") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    header = 0
    try:
        [float(cell) for cell in first.split(",")]
    except ValueError:
        header = 1  # a header row of names
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": said below, in one line
            table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, skiprows=header, dtype=np.float64)
    except ValueError as error:
        raise InvalidParameter(f"{name} is not a table of numbers ({one_line(error)}).") from None
    if table.size == 0:
        raise InvalidParameter(f"{name} holds no rows of numbers.")
    if table.shape[1] < 2:
        raise InvalidParameter(f"{name} needs at least two columns (inputs, then the target); it has "
                               f"{table.shape[1]}.")
    return table[:, :-1], table[:, -1]


def infer_task(y: np.ndarray, outputs: int) -> Task:
    """``"classification"`` when the targets are one column of whole numbers >= 0 and the
    network answers more than one value per input (class scores); else ``"regression"``."""
    whole = y.ndim == 1 and bool(np.all(y == np.round(y))) and float(y.min()) >= 0
    return "classification" if whole and outputs > 1 else "regression"


# ----------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class ReferenceSettings:
    """What every reference of a folder shares; a rerun must give the same (``count`` aside)."""

    factories: tuple[str, ...]
    data_sha256: str
    input_shape: tuple[int, ...]
    task: Task
    epochs: int
    lr: float
    batch_size: int
    fraction: float
    widths: tuple[int, ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("factories", "input_shape", "widths"):
            data[key] = list(data[key])
        return data


@dataclass(frozen=True)
class PlannedReference:
    """One reference: its file name, factory, width (``None``: the factory's own) and seed."""

    index: int
    name: str
    factory: str
    width: int | None
    seed: int


def plan_references(settings: ReferenceSettings, count: int, takes_width: Sequence[bool]) -> list[PlannedReference]:
    """The ``count`` references of ``settings``: factories in turn; for a factory that takes a
    ``width``, the widths in turn over its references; reference ``i``'s seed drawn from
    ``SeedSequence([seed, i])`` (so no reference gets a small seed an owner typically used).
    The same settings give the same plan, which is what makes a rerun resumable.

    >>> s = ReferenceSettings(("a.py:mlp", "a.py:cnn"), "0" * 64, (4,), "regression", 1, 1e-3, 64, 0.8, (8, 16), 0)
    >>> [(p.name, p.width) for p in plan_references(s, 4, [True, False])]
    [('ref-000-mlp-w8', 8), ('ref-001-cnn', None), ('ref-002-mlp-w16', 16), ('ref-003-cnn', None)]
    """
    planned = []
    n = len(settings.factories)
    for i in range(count):
        f = i % n
        width = settings.widths[(i // n) % len(settings.widths)] if takes_width[f] and settings.widths else None
        function = settings.factories[f].rpartition(":")[2]
        name = f"ref-{i:03d}-{function}" + ("" if width is None else f"-w{width}")
        seed = int(np.random.SeedSequence([settings.seed, i]).generate_state(1)[0]) & 0x7FFFFFFF
        planned.append(PlannedReference(i, name, settings.factories[f], width, seed))
    return planned


# ----------------------------------------------------------------------------------- training one

_FACTORIES: dict[str, Callable[..., Any]] = {}
_DATA: dict[str, np.ndarray] = {}


def _factory(spec: str) -> Callable[..., Any]:
    if spec not in _FACTORIES:
        from .models.files import load_factory

        _FACTORIES[spec] = load_factory(spec)
    return _FACTORIES[spec]


def _build(spec: str, width: int | None, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    try:
        model = _factory(spec)(width=width) if width is not None else _factory(spec)()
    except TafaError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code
        raise ModelLoadError(f"Factory {spec!r} failed to build a model ({type(error).__name__}: "
                             f"{one_line(error)}).") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"Factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module.")
    return model


def _start_worker(x: np.ndarray, y: np.ndarray) -> None:
    import signal

    from .threads import pin_torch_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cancels what is left
    pin_torch_threads(1)
    _DATA["x"], _DATA["y"] = x, y


def _train(planned: PlannedReference, settings: ReferenceSettings, folder: str) -> dict[str, Any]:
    """Train, export and write one reference (in a worker, or in the parent with one job);
    returns its record."""
    import torch

    from .training import Objective, TrainingData, accuracy, fit

    started = time.perf_counter()
    x, y = _DATA["x"], _DATA["y"]
    order = np.random.default_rng(planned.seed).permutation(len(x))
    cut = max(1, min(len(x), round(settings.fraction * len(x))))
    train, held = order[:cut], order[cut:]
    objective: Objective = "classify" if settings.task == "classification" else "regress"

    def part(index: np.ndarray) -> TrainingData:
        return TrainingData(torch.as_tensor(x[index]), torch.as_tensor(y[index]), objective)

    model = _build(planned.factory, planned.width, planned.seed)
    fit(model, part(train), epochs=settings.epochs, lr=settings.lr, seed=planned.seed,
        batch_size=settings.batch_size)
    quality = round(accuracy(model, part(held)), 4) if len(held) > 1 else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, *settings.input_shape),), buffer,  # type: ignore[arg-type]
                              dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    except Exception as error:  # noqa: BLE001 - an architecture the exporter does not know
        raise ModelLoadError(f"The model of factory {planned.factory!r} could not be exported to ONNX "
                             f"({type(error).__name__}: {one_line(error)}).") from None
    write_atomically(Path(folder) / f"{planned.name}.onnx", buffer.getvalue())
    return {"name": f"{planned.name}.onnx", "factory": planned.factory, "width": planned.width, "seed": planned.seed,
            "train_samples": int(len(train)), "held_out_samples": int(len(held)),
            "held_out_quality": quality, "seconds": round(time.perf_counter() - started, 2)}


# ----------------------------------------------------------------------------------- the folder

@dataclass
class MadeReferences:
    """What :func:`make_references` did: ``made`` and ``skipped`` (already there) file names,
    every reference's record (``records``, from the folder's manifest), the settings."""

    folder: str
    settings: ReferenceSettings
    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def quality_name(self) -> str:
        return "accuracy" if self.settings.task == "classification" else "R^2"

    def low_quality(self, margin: float = QUALITY_MARGIN) -> list[tuple[str, float, float]]:
        """:func:`low_quality` of these references."""
        return low_quality(self.records, margin)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "made": self.made, "skipped": self.skipped, "seconds": round(self.seconds, 2),
                "settings": self.settings.to_dict(), "references": self.records,
                "low_quality": [name for name, _, _ in self.low_quality()]}

    def quality_warning(self, margin: float = QUALITY_MARGIN) -> str | None:
        """One line naming the references far below the others' held-out quality, or ``None``."""
        low = self.low_quality(margin)
        if not low:
            return None
        named = ", ".join(f"{name} {quality:.3f} (others' median {median:.3f})" for name, quality, median in low)
        return (f"{len(low)} of {len(self.records)} references score a held-out {self.quality_name} more than "
                f"{margin:g} below the median of the others: {named}; a reference unlike a trained model weakens "
                "the bound (check its training, or refuse such references with --min-quality Q)")

    def render(self) -> str:
        total = len(self.made) + len(self.skipped)
        lines = [f"{total} references in {self.folder}: {len(self.made)} made in {self.seconds:.1f} s, "
                 f"{len(self.skipped)} already there (skipped)"]
        qualities = [r["held_out_quality"] for r in self.records if r.get("held_out_quality") is not None]
        if qualities:
            lines.append(f"  task {self.settings.task}; held-out {self.quality_name}: median "
                         f"{float(np.median(qualities)):.3f}, lowest {min(qualities):.3f} (each reference on the "
                         f"{1 - self.settings.fraction:.0%} of the data it did not train on)")
        lines.append(f"  by rank, {total} distinct references support alpha >= {1 / (total + 1):.3g} "
                     "(0.05 needs 19 and 0.01 needs 99; a fingerprint with two stages needs 39 and 199, "
                     "with three 59 and 299; docs/references.md)")
        return "\n".join(lines)


def _quality(record: dict[str, Any]) -> float | None:
    value = record.get("held_out_quality")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def low_quality(records: Sequence[dict[str, Any]], margin: float = QUALITY_MARGIN) -> list[tuple[str, float, float]]:
    """``(name, quality, median of the others)`` for each reference whose held-out quality is
    more than ``margin`` below the median of the other references' (those with a quality; at
    least three are needed to say "the others").

    >>> records = [{"name": f"r{i}", "held_out_quality": q} for i, q in enumerate([0.9, 0.88, 0.91, 0.35])]
    >>> low_quality(records)
    [('r3', 0.35, 0.9)]
    >>> low_quality(records[:3])
    []
    """
    scored = [(str(record.get("name")), q) for record in records if (q := _quality(record)) is not None]
    if len(scored) < 3:
        return []
    low = []
    for i, (name, quality) in enumerate(scored):
        median = float(np.median([q for j, (_, q) in enumerate(scored) if j != i]))
        if quality < median - margin:
            low.append((name, quality, median))
    return low


def _refuse_below(folder: Path, settings: ReferenceSettings, records: dict[str, dict[str, Any]],
                  minimum: float) -> None:
    """Refuse the references whose held-out quality is below ``minimum`` (or unknown): moved to
    ``folder/refused/`` and out of the manifest, so that the folder ``--references`` reads
    holds none of them; one line names them."""
    below = {name: _quality(record) for name, record in records.items()
             if (q := _quality(record)) is None or q < minimum}
    if not below:
        return
    refused = folder / REFUSED
    refused.mkdir(exist_ok=True)
    for name in below:
        if (folder / name).is_file():
            os.replace(folder / name, refused / name)
        del records[name]
    _write_manifest(folder / MANIFEST, settings, records)
    quality = "accuracy" if settings.task == "classification" else "R^2"
    shown = ", ".join(f"{name} {'unknown' if q is None else f'{q:.3f}'}" for name, q in list(below.items())[:3])
    raise InvalidParameter(f"{len(below)} of {len(below) + len(records)} references score a held-out {quality} "
                           f"below --min-quality {minimum:g} ({shown}{', ...' if len(below) > 3 else ''}); moved "
                           f"to {REFUSED}/ in --out, out of the references (the same settings train them alike: "
                           "change --epochs, --lr or the factories, in another --out).")


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    raw = read_regular(path, limit=MAX_MANIFEST_BYTES, what="Reference manifest")
    try:
        manifest = strict_json(raw, what=f"Reference manifest {str(path)!r}")
    except (ValueError, RecursionError) as error:
        raise InvalidParameter(f"Reference manifest {str(path)!r} is not valid JSON ({one_line(error)}); "
                               "remove it and the folder's references, or choose another --out.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("settings"), dict) or not isinstance(manifest.get("references"), dict):
        raise InvalidParameter(f"Reference manifest {str(path)!r} is not a {MANIFEST_FORMAT} manifest; choose "
                               "another --out.")
    return manifest


def _write_manifest(path: Path, settings: ReferenceSettings, records: dict[str, dict[str, Any]]) -> None:
    manifest = {"format": MANIFEST_FORMAT, "settings": settings.to_dict(),
                "references": dict(sorted(records.items()))}
    write_atomically(path, (json.dumps(manifest, indent=1) + "\n").encode())


def _check_folder(folder: Path, settings: ReferenceSettings) -> dict[str, dict[str, Any]]:
    """The records already in ``folder`` (made with the same settings); a folder made with
    other settings, or holding model files tafa references did not make, is refused."""
    from .models.files import MODEL_SUFFIXES

    if folder.exists() and not folder.is_dir():
        raise InvalidParameter(f"--out {str(folder)!r} exists and is not a folder.")
    manifest = _read_manifest(folder / MANIFEST)
    if manifest is None:
        strangers = sorted(p.name for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES) if folder.exists() else []
        if strangers:
            raise InvalidParameter(f"--out {str(folder)!r} already holds model files that tafa references did not "
                                   f"make ({', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); "
                                   "choose an empty or new folder.")
        return {}
    wanted = settings.to_dict()
    differ = [key for key in wanted if manifest["settings"].get(key) != wanted[key]]
    if differ:
        shown = "; ".join(f"{key} {manifest['settings'].get(key)!r} there, {wanted[key]!r} now" for key in differ[:3])
        raise InvalidParameter(f"--out {str(folder)!r} holds references made with other settings ({shown}); "
                               "give the same settings to resume it (a larger --count adds references), or "
                               "choose another --out.")
    return {name: record for name, record in manifest["references"].items() if isinstance(record, dict)}


def _check_factories(data: ReferenceData, factories: Sequence[str], widths: Sequence[int],
                     task: Task | None) -> tuple[list[bool], Task]:
    """Build each factory's model once (in this process) and run it on two inputs, so that a
    factory that cannot be imported, does not fit the data's inputs or the task's targets fails
    in one line before any training. Returns which factories take a ``width`` and the task."""
    import torch

    from .models.options import FACTORY_SPEC

    takes_width, outputs = [], []
    for spec in factories:
        if not FACTORY_SPEC.match(spec):
            raise InvalidParameter(f"--factory {spec!r} must be written 'package.module:function' or "
                                   "'path/to/file.py:function'.")
        try:
            parameters = inspect.signature(_factory(spec)).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        takes_width.append("width" in parameters)
        model = _build(spec, widths[0] if widths and takes_width[-1] else None, 0)
        try:
            with torch.no_grad():
                out = model.eval()(torch.as_tensor(data.x[:2]))
        except Exception as error:  # noqa: BLE001 - the user's network on the user's data
            raise ShapeMismatch(f"The model of factory {spec!r} fails on the data's inputs of shape "
                                f"{list(data.input_shape)} ({type(error).__name__}: {one_line(error)}); "
                                "pass --input-shape to reshape them.") from None
        if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != 2:
            raise ShapeMismatch(f"The model of factory {spec!r} must answer one row per input; it answered "
                                f"{type(out).__name__} {list(getattr(out, 'shape', []))} for 2 inputs.")
        outputs.append(math.prod(out.shape[1:]))
    if widths and not any(takes_width):
        raise InvalidParameter(f"--widths needs a factory that takes a 'width' argument; none of "
                               f"{', '.join(factories)} does.")
    if len(set(outputs)) > 1:
        raise ShapeMismatch(f"The factories' models answer different numbers of values per input ({outputs}); "
                            "references of one fingerprint must share its output shape.")
    chosen = task or infer_task(data.y, outputs[0])
    if chosen == "classification":
        y = data.y
        if y.ndim != 1 or not np.all(y == np.round(y)) or y.min() < 0:
            raise InvalidParameter(f"--task classification needs one column of class numbers 0, 1, ... as targets "
                                   f"in {data.source!r}.")
        if int(y.max()) >= outputs[0]:
            raise ShapeMismatch(f"The targets of {data.source!r} hold class {int(y.max())}, but the factories' "
                                f"models answer {outputs[0]} class scores.")
    else:
        targets = 1 if data.y.ndim == 1 else data.y.shape[1]
        if targets != outputs[0]:
            raise ShapeMismatch(f"Regression targets of {data.source!r} have {targets} value(s) per sample; the "
                                f"factories' models answer {outputs[0]}.")
    return takes_width, chosen


def make_references(factories: Sequence[str], data: ReferenceData, out: str | os.PathLike[str], *,
                    count: int = 40, epochs: int = 20, lr: float = 1e-3, batch_size: int = 64,
                    fraction: float = 0.8, widths: Sequence[int] = (), seed: int = 0, task: Task | None = None,
                    jobs: int = 1, progress: bool = False, min_quality: float | None = None,
                    notify: Callable[[str], None] | None = None) -> MadeReferences:
    """Train ``count`` independent references into the folder ``out`` (see module doc);
    returns what was made and skipped. ``notify`` receives one line before training starts.
    ``min_quality``: every reference in the folder (made now or before) must score at least
    this held-out accuracy (classification) or R^2 (regression); those below are moved to
    ``out/refused/`` and :class:`~tafa.errors.InvalidParameter` names them."""
    caller = "make_references"
    check_param("factories", factories, "a non-empty list of factory names",
                isinstance(factories, (list, tuple)) and len(factories) > 0
                and all(isinstance(f, str) for f in factories), caller=caller)
    for name, value, must_be, ok in (
            ("count", count, "an integer >= 1", is_integer(count) and count >= 1),
            ("epochs", epochs, "an integer >= 1", is_integer(epochs) and epochs >= 1),
            ("batch_size", batch_size, "an integer >= 1", is_integer(batch_size) and batch_size >= 1),
            ("jobs", jobs, "an integer >= 1", is_integer(jobs) and jobs >= 1),
            ("lr", lr, "a number > 0", isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0),
            ("fraction", fraction, "a number in (0, 1]",
             isinstance(fraction, (int, float)) and 0 < fraction <= 1),
            ("widths", widths, "integers >= 1", all(is_integer(w) and w >= 1 for w in widths)),
            ("task", task, f"None or one of {', '.join(TASKS)}", task is None or task in TASKS),
            ("min_quality", min_quality, "None or a finite number",
             min_quality is None or (isinstance(min_quality, (int, float)) and not isinstance(min_quality, bool)
                                     and math.isfinite(min_quality)))):
        check_param(name, value, must_be, ok, caller=caller)
    if min_quality is not None and fraction == 1:
        raise InvalidParameter("--min-quality needs held-out data to measure, but --fraction 1 trains every "
                               "reference on all of it; give a fraction below 1.")
    factories = [absolute_factory(spec) for spec in factories]  # the workers and a rerun find the same files
    takes_width, chosen = _check_factories(data, factories, list(widths), task)
    settings = ReferenceSettings(tuple(factories), data.sha256, data.input_shape, chosen, int(epochs), float(lr),
                                 int(batch_size), float(fraction), tuple(int(w) for w in widths), int(seed))
    folder = Path(out)
    records = _check_folder(folder, settings)
    folder.mkdir(parents=True, exist_ok=True)
    planned = plan_references(settings, count, takes_width)
    result = MadeReferences(str(folder), settings)
    todo = [item for item in planned if not (folder / f"{item.name}.onnx").is_file()]
    result.skipped = [f"{item.name}.onnx" for item in planned if item not in todo]
    if notify is not None:
        notify(f"{len(todo)} references to train ({chosen}, {epochs} epoch{'s' if epochs > 1 else ''}, "
               f"{fraction:.0%} of {len(data.x)} samples each), {len(result.skipped)} already in {folder}"
               + (f", {min(jobs, len(todo))} at a time" if todo and jobs > 1 else ""))
    started = time.perf_counter()
    manifest = folder / MANIFEST
    _write_manifest(manifest, settings, records)
    for record in _run(todo, settings, data, str(folder), jobs, progress):
        records[record["name"]] = record
        result.made.append(record["name"])
        _write_manifest(manifest, settings, records)
    result.seconds = time.perf_counter() - started
    if min_quality is not None:  # every reference in the folder, made now or before
        _refuse_below(folder, settings, records, float(min_quality))
    names = {f"{item.name}.onnx" for item in planned}
    result.records = [records[name] for name in sorted(names) if name in records]
    return result


def _run(todo: list[PlannedReference], settings: ReferenceSettings, data: ReferenceData, folder: str, jobs: int,
         progress: bool) -> Any:
    """Yield each reference's record as it is written: in this process with one job, else in
    ``jobs`` spawned worker processes."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="references", unit="model", disable=not progress or not todo)
    try:
        if jobs == 1 or len(todo) <= 1:
            from .threads import one_torch_thread

            _DATA["x"], _DATA["y"] = data.x, data.y
            try:
                with one_torch_thread():
                    for item in todo:
                        yield _train(item, settings, folder)
                        bar.update()
            finally:
                _DATA.clear()
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(data.x, data.y))
        try:
            pending = {pool.submit(_train, item, settings, folder) for item in todo}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    bar.update()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        bar.close()
