"""Model zoos: an owner, its derived copies and independent models, built from a recipe.

A :class:`ZooSpec` says what the owner is (task, architecture, training) and which models
surround it; :func:`recipes` expands it into :class:`ModelRecipe` rows, each with a role:

- ``owner``;
- ``scored``: the positives (the owner run through :mod:`tafa.attacks`) and negatives
  (independently trained models) that the benchmark's metrics are computed on;
- ``calibration``: further independent models that calibrate a threshold (disjoint seeds).
  Scored negatives and calibration models are one pool drawn from the same families (same
  architecture on the owner's half, same architecture on the other half, each other
  architecture on either half), split at random (seeded): the calibration models are
  exchangeable with the scored negatives, which is what the rank bound of the calibrated
  rule assumes;
- ``shared-init``: models trained from the owner's *private* initialisation on the other
  half. They are not independent of the owner (nobody has those weights without taking
  them), so they are neither positives nor negatives: the benchmark reports their scores
  in a row of their own;
- ``training``: positives and negatives a learned verifier may train on (disjoint seeds),
  made by the owner from its own data (attacks on the owner's half, independent
  retrainings), and ``free``: the same made with no data at all (attacks with synthetic
  inputs labelled by the owner; look-alikes distilled on the owner's outputs at random
  domain inputs), see :mod:`tafa.attacks.references`.

A zoo with a shared public ``parent`` (:class:`~tafa.bench.parents.ParentSpec`) is the same
shape with other negatives: the owner fine-tunes the parent (the zoo's ``lr`` and ``epochs``
are its fine-tuning), the independent pool is made of *siblings* (the parent fine-tuned on
the other half by several recipes and seeds; family ``"sibling"``), split into scored and
calibration models as above, and the parent itself is one scored negative (family
``"parent"``, model ``"parent"``). The owner's own negative references (``training``) are
fine-tunes of the parent on the owner's half with other seeds. There is no shared-init row:
in a parent zoo the shared initialisation is public, and the siblings are exactly that.

Every model is built deterministically from its recipe and cached on disk under the
SHA-256 of the recipe (safetensors weights + a JSON description of the layers, or of a
residual network's tree of named children: nothing is pickled), so a second run trains
nothing. :func:`build_zoo` uses a process pool.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..attacks import ATTACKS, STANDARD_ATTACKS, AttackContext, get_attack
from ..attacks.references import synthetic_data
from ..domain import parse_domain
from ..storage import write_atomically
from ..threads import one_torch_thread, pin_torch_threads
from ..training import TrainingData, fit
from .architectures import (BasicBlock, Bottleneck, EncoderBlock, Patches, PositionEmbedding, ResNet, SelfAttention,
                            Transformer, build)
from .datasets import load_task
from .parents import ParentSpec, pretraining_data, subset

#: Bump when training or attack code changes what a recipe produces.
CACHE_VERSION = 2  # 2: data-free copies fine-tune on perturbed targets, not the owner's own outputs

#: Synthetic (domain-drawn, owner-labelled) inputs an owner makes for data-free references.
SYNTHETIC_INPUTS = 2000


@dataclass(frozen=True)
class ZooSpec:
    """An owner and the models around it."""

    name: str
    scenario: str                      # "classification" | "regression" | "generation"
    task: str                          # a tafa.bench.datasets task
    owner_arch: str
    domain: str
    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    latent: int | None = None          # generators: latent size (the model maps latent -> image)
    other_archs: tuple[str, ...] = ()
    attacks: tuple[str, ...] = STANDARD_ATTACKS
    attack_epochs: int | None = None
    #: The epochs of a distillation (its students and look-alikes), where ``attack_epochs`` would
    #: otherwise cut them: a student trains from scratch (``None``: ``attack_epochs``, else the
    #: distillation's own default, :data:`tafa.attacks.extraction.DISTILL_EPOCHS`).
    distill_epochs: int | None = None
    independent: int = 20              # scored negatives, cycling over independent_families()
    calibration: int = 10              # calibration models, drawn from the same families
    same_init: int = 4                 # the "shares the owner's initialisation" row
    training_positives: tuple[str, ...] = ()
    training_negatives: int = 0
    free_positives: tuple[str, ...] = ()
    free_negatives: int = 0
    parent: ParentSpec | None = None   # a shared public parent the owner and the siblings fine-tune
    #: The pooled entry the zoo joins (``None``: its scenario's; a shared-parent zoo: ``shared parent``)
    pool: str | None = None
    #: Whether the zoo has interface and evasion families (:func:`tafa.bench.run.interface_rows`; not
    #: the ResNet zoo nor the smooth-activation zoos, for their cost; never a shared-parent zoo).
    interfaces: bool = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.latent,) if self.latent else load_task(self.task).input_shape

    @property
    def output_dim(self) -> int:
        task = load_task(self.task)
        return int(np.prod(task.input_shape)) if self.latent else task.output_dim

    def independent_families(self) -> list[tuple[str, str, str | None]]:
        """``(family, architecture, data half)`` of each kind of independent model; ``None``:
        either half (alternating)."""
        rows: list[tuple[str, str, str | None]] = [("same-arch", self.owner_arch, "owner"),
                                                   ("other-split", self.owner_arch, "other")]
        return rows + [(f"other-arch-{arch}", arch, None) for arch in self.other_archs]

    def data(self, part: str) -> TrainingData:
        """The training data of one half (``"owner"`` or ``"other"``)."""
        split = load_task(self.task).split(part)
        return TrainingData(split.x, None, "vae") if self.latent else split


@dataclass(frozen=True)
class ModelRecipe:
    """How one model of a zoo is made."""

    name: str
    role: str                          # owner | scored | calibration | training | free
    label: int                         # 1 derived, 0 independent
    family: str                        # attack family, or the kind of independent model
    arch: str | None = None
    part: str = "owner"                # trained models: the data half; attacks: "owner", "other", "synthetic"
    seed: int = 0
    init_seed: int | None = None
    attack: str | None = None
    #: Fine-tuned from the zoo's parent: (learning rate, epochs, fraction of the data half).
    tuning: tuple[float, int, float] | None = None


def recipes(spec: ZooSpec) -> list[ModelRecipe]:
    """Every model of the zoo, owner first; names are unique within a zoo."""
    if spec.parent is not None:
        return _parent_recipes(spec, spec.parent)
    rows = [ModelRecipe("owner", "owner", 1, "owner", spec.owner_arch, "owner", 0)]
    for i, name in enumerate(spec.attacks):
        rows.append(ModelRecipe(name, "scored", 1, ATTACKS[name].family, attack=name, seed=100 + i, part="other"))
    seed = 1000

    def negatives(role: str, count: int, kind: str, arch: str, part: str, init: bool = False) -> None:
        nonlocal seed
        for _ in range(count):
            seed += 1
            rows.append(ModelRecipe(f"{role[:3]}-{kind}-{seed}", role, 0, kind, arch, part, seed,
                                    init_seed=0 if init else None))

    # one pool of independent models over the families, split at random (within each family and
    # data half, in proportion to its size) into scored / calibration: both sets have the same mix
    families = spec.independent_families()
    pool = spec.independent + spec.calibration
    kinds = []
    for i in range(pool):
        family, arch, part = families[i % len(families)]
        kinds.append((family, arch, part if part is not None else "owner" if (i // len(families)) % 2 else "other"))
    calibration = _stratified_calibration(kinds, spec.calibration)
    for i, (family, arch, part) in enumerate(kinds):
        negatives("calibration" if i in calibration else "scored", 1, family, arch, part)
    negatives("shared-init", spec.same_init, "same-init", spec.owner_arch, "other", init=True)
    rows_before = len(rows)
    for i in range(spec.training_negatives):
        arch = spec.owner_arch if i % 2 == 0 or not spec.other_archs else spec.other_archs[i % len(spec.other_archs)]
        negatives("training", 1, "reference", arch, "owner")
    training = rows[rows_before:]
    return _checked(spec, rows[:rows_before] + _references(spec, training))


def _references(spec: ZooSpec, training_negatives: list[ModelRecipe]) -> list[ModelRecipe]:
    """The owner's references: positives made with its data, its ``training_negatives``, then
    positives made without data and data-free look-alikes."""
    rows = [ModelRecipe(f"train-{name}", "training", 1, ATTACKS[name].family, attack=name, seed=5000 + i,
                        part="owner") for i, name in enumerate(spec.training_positives)] + training_negatives
    for i, name in enumerate(spec.free_positives):
        rows.append(ModelRecipe(f"free-{name}", "free", 1, ATTACKS[name].family, attack=name, seed=6000 + i,
                                part="synthetic"))
    for i in range(spec.free_negatives):
        rows.append(ModelRecipe(f"free-look-alike-{i}", "free", 0, "look-alike", attack="distill_same",
                                seed=7000 + i, part="synthetic"))
    return rows


def _parent_recipes(spec: ZooSpec, parent: ParentSpec) -> list[ModelRecipe]:
    """A parent zoo's models (see the module doc): owner, copies, siblings, the parent, references."""
    def tuning(factors: tuple[float, float, float]) -> tuple[float, int, float]:
        return (spec.lr * factors[0], max(1, int(round(spec.epochs * factors[1]))), factors[2])

    arch = spec.owner_arch
    rows = [ModelRecipe("owner", "owner", 1, "owner", arch, "owner", 0, tuning=tuning((1.0, 1.0, 1.0)))]
    rows += [ModelRecipe(name, "scored", 1, ATTACKS[name].family, attack=name, seed=100 + i, part="other")
             for i, name in enumerate(spec.attacks)]
    rows.append(ModelRecipe("parent", "scored", 0, "parent", arch, "parent", parent.seed))
    kinds = [i % len(parent.siblings) for i in range(spec.independent + spec.calibration)]
    calibration = _stratified_calibration([("sibling", arch, str(kind)) for kind in kinds], spec.calibration)
    for i, kind in enumerate(kinds):
        role = "calibration" if i in calibration else "scored"
        rows.append(ModelRecipe(f"{role[:3]}-sibling-{1001 + i}", role, 0, "sibling", arch, "other", 1001 + i,
                                tuning=tuning(parent.siblings[kind])))
    training = [ModelRecipe(f"tra-parent-tune-{3001 + i}", "training", 0, "reference", arch, "owner", 3001 + i,
                            tuning=tuning(parent.siblings[i % len(parent.siblings)]))
                for i in range(spec.training_negatives)]
    return _checked(spec, rows + _references(spec, training))


def _checked(spec: ZooSpec, rows: list[ModelRecipe]) -> list[ModelRecipe]:
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"Zoo {spec.name!r} has duplicate model names.")
    return rows


def _stratified_calibration(kinds: list[tuple[str, str, str]], count: int, seed: int = 2024) -> set[int]:
    """``count`` indices of the pool whose models are of ``kinds`` (family, architecture, data
    half), each kind contributing in proportion to its size (largest remainders first), chosen
    at random within it: the calibration and scored sets then mix families *and* halves alike
    (the half moves a diabetes model's score from about 0.05 to 0.55)."""
    rng = np.random.default_rng(seed)
    strata = sorted(set(kinds))
    members = [[i for i, kind in enumerate(kinds) if kind == stratum] for stratum in strata]
    exact = [len(m) * count / len(kinds) for m in members]
    quota = [int(e) for e in exact]
    for s in sorted(range(len(strata)), key=lambda s: exact[s] - quota[s], reverse=True)[:count - sum(quota)]:
        quota[s] += 1
    return {int(i) for m, q in zip(members, quota) for i in rng.permutation(m)[:q]}


def recipe_key(spec: ZooSpec, recipe: ModelRecipe) -> str:
    """SHA-256 naming a model in the cache: everything that determines its weights."""
    if recipe.attack is None:
        relevant: dict[str, Any] = {
            "version": CACHE_VERSION, "task": spec.task, "latent": spec.latent, "arch": recipe.arch,
            "part": recipe.part, "seed": recipe.seed, "init_seed": recipe.init_seed, "epochs": spec.epochs,
            "lr": spec.lr, "weight_decay": spec.weight_decay}
        if recipe.part == "parent":  # keys of the other recipes stay as they were (the cache)
            relevant = {"version": CACHE_VERSION, "task": spec.task, "latent": spec.latent, "arch": recipe.arch,
                        "parent": _parent_fields(spec), "weight_decay": spec.weight_decay}
        elif recipe.tuning is not None:
            relevant.update(parent=_parent_fields(spec), tuning=list(recipe.tuning), epochs=None, lr=None)
    else:
        relevant = {"version": CACHE_VERSION, "owner": recipe_key(spec, recipes(spec)[0]), "attack": recipe.attack,
                    "seed": recipe.seed, "attack_epochs": spec.attack_epochs, "student": _student_arch(spec),
                    "data": recipe.part, "domain": spec.domain if recipe.part == "synthetic" else None}
        if spec.distill_epochs is not None and get_attack(recipe.attack).family == "extraction":  # others' keys stay
            relevant["distill_epochs"] = spec.distill_epochs
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:32]


def _parent_fields(spec: ZooSpec) -> dict[str, Any]:
    assert spec.parent is not None
    return {"pretraining": spec.parent.pretraining, "epochs": spec.parent.epochs, "lr": spec.parent.lr,
            "seed": spec.parent.seed}


def _student_arch(spec: ZooSpec) -> str:
    return spec.other_archs[0] if spec.other_archs else spec.owner_arch


# ---------------------------------------------------------------- layer description (no pickle)
_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "Linear": lambda a: nn.Linear(a["in"], a["out"], bias=a["bias"]),
    "Conv2d": lambda a: nn.Conv2d(a["in"], a["out"], a["kernel"], a["stride"], a["padding"], bias=a["bias"]),
    "ReLU": lambda a: nn.ReLU(),
    "LeakyReLU": lambda a: nn.LeakyReLU(a["slope"]),
    "MaxPool2d": lambda a: nn.MaxPool2d(a["kernel"], a["stride"], a.get("padding", 0)),
    "AvgPool2d": lambda a: nn.AvgPool2d(a["kernel"], a["stride"], a.get("padding", 0)),
    "Flatten": lambda a: nn.Flatten(),
    "Unflatten": lambda a: nn.Unflatten(1, tuple(a["shape"])),
    "Sigmoid": lambda a: nn.Sigmoid(),
    "Tanh": lambda a: nn.Tanh(),
    "Dropout": lambda a: nn.Dropout(a["p"]),
    "BatchNorm1d": lambda a: nn.BatchNorm1d(a["features"]),
    "BatchNorm2d": lambda a: nn.BatchNorm2d(a["features"]),
    "AdaptiveAvgPool2d": lambda a: nn.AdaptiveAvgPool2d(a["size"]),
    "Identity": lambda a: nn.Identity(),
    "GELU": lambda a: nn.GELU(a.get("approximate", "none")),
    "LayerNorm": lambda a: nn.LayerNorm(tuple(a["shape"]), a["eps"], a["affine"], bias=a["bias"]),
    "Patches": lambda a: Patches(a["size"]),
    "PositionEmbedding": lambda a: PositionEmbedding(a["tokens"], a["dim"]),
    "SelfAttention": lambda a: SelfAttention(a["dim"], a["heads"]),
}


def describe_layers(model: nn.Sequential) -> list[dict[str, Any]]:
    """A JSON description of a Sequential's layers, inverse of :func:`layers_from`."""
    return [_describe_layer(layer) for layer in model]


def _describe_layer(layer: nn.Module) -> dict[str, Any]:
    kind = type(layer).__name__
    if kind == "Linear":
        return {"kind": kind, "in": layer.in_features, "out": layer.out_features, "bias": layer.bias is not None}
    if kind == "Conv2d":
        return {"kind": kind, "in": layer.in_channels, "out": layer.out_channels, "kernel": layer.kernel_size,
                "stride": layer.stride, "padding": layer.padding, "bias": layer.bias is not None}
    if kind == "LeakyReLU":
        return {"kind": kind, "slope": layer.negative_slope}
    if kind in ("MaxPool2d", "AvgPool2d"):
        row = {"kind": kind, "kernel": layer.kernel_size, "stride": layer.stride}
        return row | ({"padding": layer.padding} if layer.padding else {})
    if kind == "AdaptiveAvgPool2d":
        return {"kind": kind, "size": layer.output_size}
    if kind == "Unflatten":
        return {"kind": kind, "shape": list(layer.unflattened_size)}  # type: ignore[arg-type]
    if kind == "Dropout":
        return {"kind": kind, "p": layer.p}
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        return {"kind": kind, "features": layer.num_features}
    if isinstance(layer, nn.GELU):
        return {"kind": kind, "approximate": layer.approximate}
    if isinstance(layer, nn.LayerNorm):
        return {"kind": kind, "shape": list(layer.normalized_shape), "eps": layer.eps,
                "affine": layer.elementwise_affine, "bias": layer.bias is not None}
    if isinstance(layer, Patches):
        return {"kind": kind, "size": layer.size}
    if isinstance(layer, PositionEmbedding):
        return {"kind": kind, "tokens": layer.weight.shape[0], "dim": layer.weight.shape[1]}
    if isinstance(layer, SelfAttention):  # its four Linear maps keep their shapes (no attack reindexes them)
        return {"kind": kind, "dim": layer.q.in_features, "heads": layer.heads}
    if kind in _LAYERS:
        return {"kind": kind}
    raise ValueError(f"The zoo cannot describe a {kind} layer.")


def layers_from(description: list[dict[str, Any]]) -> nn.Sequential:
    """A fresh Sequential from :func:`describe_layers` output."""
    return nn.Sequential(*(_LAYERS[row["kind"]](row) for row in description))


#: Networks that are not a Sequential (residual ones, the transformer), described as a tree of
#: named children; their ``forward`` reads the children by name, so a copy with folded BatchNorms
#: (Identity) or pruned channels (feed-forward units) is rebuilt exactly.
_CONTAINERS: dict[str, type[nn.Module]] = {"ResNet": ResNet, "BasicBlock": BasicBlock, "Bottleneck": Bottleneck,
                                            "Transformer": Transformer, "EncoderBlock": EncoderBlock,
                                            "Sequential": nn.Sequential}


def describe_network(model: nn.Module) -> dict[str, Any]:
    """A JSON description of any network of :data:`_CONTAINERS` and known layers, inverse of
    :func:`network_from`."""
    kind = type(model).__name__
    if kind not in _CONTAINERS:
        return _describe_layer(model)
    return {"kind": kind, "children": [[name, describe_network(child)] for name, child in model.named_children()]}


def network_from(description: dict[str, Any]) -> nn.Module:
    """A fresh network from :func:`describe_network` output."""
    kind = description["kind"]
    if kind not in _CONTAINERS:
        return _LAYERS[kind](description)
    shell = _CONTAINERS[kind].__new__(_CONTAINERS[kind])
    nn.Module.__init__(shell)
    for name, child in description["children"]:
        shell.add_module(str(name), network_from(child))
    return shell


def save_model(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save

    # a Sequential as the list of its layers (as the zoo always wrote it), another network as a tree
    description = describe_layers(model) if isinstance(model, nn.Sequential) else describe_network(model)
    write_atomically(path.with_suffix(".json"), json.dumps(description).encode())
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    write_atomically(path.with_suffix(".safetensors"), save(state))


def load_model(path: Path) -> nn.Module:
    from safetensors.torch import load_file

    description = json.loads(path.with_suffix(".json").read_text())
    model = layers_from(description) if isinstance(description, list) else network_from(description)
    model.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
    return model.eval()


# ---------------------------------------------------------------- building
def _train(spec: ZooSpec, recipe: ModelRecipe, cache: Path) -> nn.Module:
    assert recipe.arch is not None
    if spec.parent is not None and recipe.part == "parent":
        model = build(recipe.arch, input_shape=spec.input_shape, output_dim=spec.output_dim, seed=recipe.seed)
        return fit(model, pretraining_data(spec.parent.pretraining, spec.latent is not None),
                   epochs=spec.parent.epochs, lr=spec.parent.lr, seed=recipe.seed, weight_decay=spec.weight_decay)
    if recipe.tuning is not None:  # a fine-tune of the zoo's parent
        lr, epochs, fraction = recipe.tuning
        parent = copy.deepcopy(make_model(spec, _parent_recipe(spec), cache))
        return fit(parent, subset(spec.data(recipe.part), fraction, recipe.seed), epochs=epochs, lr=lr,
                   seed=recipe.seed, weight_decay=spec.weight_decay)
    model = build(recipe.arch, input_shape=spec.input_shape, output_dim=spec.output_dim,
                  seed=recipe.seed if recipe.init_seed is None else recipe.init_seed)
    return fit(model, spec.data(recipe.part), epochs=spec.epochs, lr=spec.lr, seed=recipe.seed,
               weight_decay=spec.weight_decay)


def make_model(spec: ZooSpec, recipe: ModelRecipe, cache: Path) -> nn.Module:
    """Load ``recipe``'s model from ``cache`` or make it (and cache it)."""
    path = cache / recipe_key(spec, recipe)
    if path.with_suffix(".safetensors").exists() and path.with_suffix(".json").exists():
        return load_model(path)
    if recipe.attack is None:
        model = _train(spec, recipe, cache)
    else:
        owner = make_model(spec, recipes(spec)[0], cache)
        other = _student_arch(spec)
        if recipe.part == "synthetic":
            data = synthetic_data(owner, parse_domain(spec.domain, spec.input_shape), SYNTHETIC_INPUTS, recipe.seed)
        else:
            data = spec.data(recipe.part)
        context = AttackContext(
            data=data, seed=recipe.seed, epochs=spec.attack_epochs, distill_epochs=spec.distill_epochs,
            student_factory=lambda seed: build(other, input_shape=spec.input_shape, output_dim=spec.output_dim,
                                               seed=seed))
        model = get_attack(recipe.attack).apply(owner, context)
    save_model(model, path)
    return model


def _parent_recipe(spec: ZooSpec) -> ModelRecipe:
    return next(recipe for recipe in recipes(spec) if recipe.part == "parent")


def _work(job: tuple[ZooSpec, ModelRecipe, str]) -> str:
    pin_torch_threads(1)
    spec, recipe, cache = job
    make_model(spec, recipe, Path(cache))
    return recipe.name


@dataclass
class Zoo:
    """A built zoo: recipes and their models."""

    spec: ZooSpec
    models: dict[str, nn.Module] = field(default_factory=dict)
    recipes: dict[str, ModelRecipe] = field(default_factory=dict)

    @property
    def owner(self) -> nn.Module:
        return self.models["owner"]

    def with_role(self, role: str) -> list[tuple[ModelRecipe, nn.Module]]:
        return [(self.recipes[name], self.models[name]) for name in self.recipes if self.recipes[name].role == role]

    def plain(self, role: str = "scored") -> list[tuple[ModelRecipe, nn.Module]]:
        """The models of ``role`` served as they are: neither behind an interface nor an evasion wrapper."""
        return [(recipe, model) for recipe, model in self.with_role(role)
                if recipe.family.split("/")[0] not in ("interface", "evasion")]


def build_zoos(specs: Iterable[ZooSpec], cache: Path, jobs: int = 2, progress: bool = True,
               roles: Iterable[str] | None = None) -> list[Zoo]:
    """Build (or load from ``cache``) every model of every zoo, owners first, in parallel.

    ``roles`` keeps only the models of those roles (and the owner): the ``training`` and
    ``free`` references are only needed by schemes fitted on references."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    specs = list(specs)
    kept = None if roles is None else {"owner", *roles}
    rows = [(spec, recipe) for spec in specs for recipe in recipes(spec) if kept is None or recipe.role in kept]
    missing = [(spec, recipe) for spec, recipe in rows
               if not (cache / recipe_key(spec, recipe)).with_suffix(".safetensors").exists()]
    parents = [job for job in missing if job[1].part == "parent"]  # what the owners of parent zoos start from
    owners = [job for job in missing if job[1].role == "owner"]
    others = [job for job in missing if job[1].role != "owner" and job[1].part != "parent"]
    if missing:
        bar = tqdm(total=len(missing), desc="zoo: training", disable=not progress)
        for phase in (parents, owners, others):
            _run_jobs([(spec, recipe, str(cache)) for spec, recipe in phase], jobs, bar)
        bar.close()
    zoos = []
    for spec in specs:
        zoo = Zoo(spec)
        for recipe in recipes(spec):
            if kept is not None and recipe.role not in kept:
                continue
            zoo.recipes[recipe.name] = recipe
            zoo.models[recipe.name] = load_model(cache / recipe_key(spec, recipe))
        zoos.append(zoo)
    return zoos


def _run_jobs(jobs: list[tuple[ZooSpec, ModelRecipe, str]], workers: int, bar: Any) -> None:
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        with one_torch_thread():
            for job in jobs:
                make_model(job[0], job[1], Path(job[2]))
                bar.update(1)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs)), initializer=_quiet) as pool:
        for _ in pool.imap_unordered(_work, jobs):
            bar.update(1)


def _quiet() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
