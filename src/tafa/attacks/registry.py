"""The attacks of the benchmark, by name: one verb, :meth:`Attack.apply`.

An :class:`Attack` turns the owner's model into a derived copy, given an
:class:`AttackContext` (the attacker's data, a seed, optionally an epoch count and a
factory for distillation students). The standard recipes of the benchmark are registered
in :data:`ATTACKS` at import; :func:`register_attack` adds more, :func:`combine` chains
registered ones.

>>> sorted({attack.family for attack in ATTACKS.values()}) == sorted(FAMILIES)
True
>>> get_attack("prune50_ft_int8").family
'combination'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from ..components import named, register_named
from ..errors import InvalidParameter, check_param
from ..training import TrainingData
from .hidden_units import weighted_layers
from .extraction import DISTILL_EPOCHS, distill, mlp_student, reinitialised, teacher_outputs
from .finetune import DEFAULT_EPOCHS, finetune
from .noise import add_weight_noise
from .obfuscation import fold_batchnorm, permute_units, rescale_units
from .pruning import magnitude_prune, structured_prune
from .quantize import quantize, to_float16

#: The attack families, as the benchmark reports them.
FAMILIES = ("finetune", "pruning", "quantization", "noise", "obfuscation", "combination", "extraction")

#: Adam learning rates of the "small" and "large" fine-tuning recipes.
SMALL_LR = 1e-3
LARGE_LR = 1e-2


@dataclass(frozen=True)
class AttackContext:
    """What an attacker has: data (of any objective), a seed, and optional settings.

    ``epochs`` overrides the epoch count of every training step (fine-tuning defaults to
    10, distillation to 30); ``distill_epochs``, where given, that of a distillation alone (a
    student trains from scratch, so a budget of fine-tuning epochs is no budget for it).
    ``student_factory(seed)`` builds the student of the other-architecture distillation;
    without it a 256-256 ReLU MLP is used.
    """

    data: TrainingData
    seed: int = 0
    epochs: int | None = None
    student_factory: Callable[[int], nn.Module] | None = None
    distill_epochs: int | None = None

    def __post_init__(self) -> None:
        caller = "AttackContext"
        check_param("data", self.data, "a TrainingData", isinstance(self.data, TrainingData), caller=caller)
        check_param("seed", self.seed, "an integer", isinstance(self.seed, (int, np.integer)), caller=caller)
        for name in ("epochs", "distill_epochs"):
            value = getattr(self, name)
            check_param(name, value, "None or an integer >= 0",
                        value is None or (isinstance(value, int) and value >= 0), caller=caller)

    def epochs_or(self, default: int) -> int:
        """The overriding epoch count, or ``default``."""
        return default if self.epochs is None else self.epochs


Recipe = Callable[[nn.Module, AttackContext], nn.Module]


@dataclass(frozen=True)
class Attack:
    """A named post-processing of one family; :meth:`apply` never modifies its input."""

    name: str
    family: str
    recipe: Recipe
    description: str = ""

    def apply(self, model: nn.Module, context: AttackContext) -> nn.Module:
        """The derived copy of ``model``, in eval mode."""
        check_param("context", context, "an AttackContext", isinstance(context, AttackContext),
                    caller=f"Attack({self.name!r}).apply")
        check_param("model", model, "an nn.Module", isinstance(model, nn.Module),
                    caller=f"Attack({self.name!r}).apply")
        return self.recipe(model, context).eval()


#: Every registered attack, by name.
ATTACKS: dict[str, Attack] = {}


def register_attack(attack: Attack, *, replace: bool = False) -> Attack:
    """Add ``attack`` to :data:`ATTACKS` (an existing name only with ``replace=True``)."""
    caller = "register_attack"
    check_param("attack", attack, "an Attack", isinstance(attack, Attack), caller=caller)
    check_param("attack.family", attack.family, f"one of {FAMILIES}", attack.family in FAMILIES, caller=caller)
    return register_named(ATTACKS, attack, attack.name, what="attack", replace=replace, caller=caller)


def get_attack(name: str) -> Attack:
    """The registered attack called ``name``."""
    return named(ATTACKS, name, caller="get_attack")


def combine(name: str, *steps: Attack | str, description: str = "") -> Attack:
    """An attack of family ``"combination"`` applying ``steps`` (attacks or registered
    names) one after the other, all with the same context."""
    check_param("steps", steps, "at least one attack", len(steps) > 0, caller="combine")
    chain = [get_attack(step) if isinstance(step, str) else step for step in steps]

    def recipe(model: nn.Module, context: AttackContext) -> nn.Module:
        for step in chain:
            model = step.apply(model, context)
        return model

    return Attack(name, "combination", recipe, description or " then ".join(step.name for step in chain))


# --- the standard recipes of the benchmark ------------------------------------------------

def _quantized(bits: int) -> Recipe:
    return lambda model, context: quantize(model, bits)


def _noisy(scale: float) -> Recipe:
    return lambda model, context: add_weight_noise(model, scale, seed=context.seed)


def _finetuning(layers: Literal["all", "last"], reinitialise_last: bool, lr: float) -> Recipe:
    def recipe(model: nn.Module, context: AttackContext) -> nn.Module:
        return finetune(model, context.data, lr=lr, layers=layers, reinitialise_last=reinitialise_last,
                        epochs=context.epochs_or(DEFAULT_EPOCHS), seed=context.seed)
    return recipe


def _pruned(prune: Callable[[nn.Module], nn.Module], tuned: bool, keep_zeros: bool) -> Recipe:
    """``prune``, then (if ``tuned``) fine-tuning at the small learning rate; ``keep_zeros``
    keeps magnitude-pruned weights at zero while it trains."""
    def recipe(model: nn.Module, context: AttackContext) -> nn.Module:
        pruned = prune(model)
        if not tuned:
            return pruned
        return finetune(pruned, context.data, lr=SMALL_LR, keep_zeros=keep_zeros,
                        epochs=context.epochs_or(DEFAULT_EPOCHS), seed=context.seed)
    return recipe


def _pruning(fraction: float, tuned: bool) -> Recipe:
    return _pruned(lambda model: magnitude_prune(model, fraction), tuned, keep_zeros=True)


def _structured(fraction: float, tuned: bool) -> Recipe:
    return _pruned(lambda model: structured_prune(model, fraction), tuned, keep_zeros=False)


def distillation_inputs(teacher: nn.Module, context: AttackContext) -> torch.Tensor:
    """The inputs a distilling attacker queries: its data, or for a decoder (``"vae"``
    data, which holds images, not latents) as many standard Gaussian latent vectors."""
    data = context.data
    if data.objective != "vae":
        return data.x
    first = weighted_layers(teacher)[0] if weighted_layers(teacher) else None
    if not isinstance(first, nn.Linear):
        raise InvalidParameter("The 'model' parameter of a distillation on 'vae' data must be a decoder "
                               f"starting with a Linear layer. Got {type(first).__name__} instead.")
    generator = torch.Generator().manual_seed(context.seed)
    return torch.randn(len(data), first.in_features, generator=generator)


def _distillation(same_architecture: bool) -> Recipe:
    def recipe(model: nn.Module, context: AttackContext) -> nn.Module:
        inputs = distillation_inputs(model, context)
        if same_architecture:
            student = reinitialised(model, seed=context.seed)
        elif context.student_factory is not None:
            student = context.student_factory(context.seed)
        else:
            output_shape = tuple(teacher_outputs(model, inputs[:1]).shape[1:])
            student = mlp_student(tuple(inputs.shape[1:]), output_shape, seed=context.seed)
        epochs = context.epochs_or(DISTILL_EPOCHS) if context.distill_epochs is None else context.distill_epochs
        return distill(model, student, inputs, epochs=epochs, lr=SMALL_LR,
                       seed=context.seed)
    return recipe


def _register_standard() -> None:
    forms: dict[str, tuple[Literal["all", "last"], bool]] = {"last": ("last", False), "all": ("all", False),
             "reinit_last": ("last", True), "reinit_all": ("all", True)}
    for form, (layers, reinit) in forms.items():
        for size, lr in (("small", SMALL_LR), ("large", LARGE_LR)):
            register_attack(Attack(f"ft_{form}_{size}", "finetune", _finetuning(layers, reinit, lr),
                                   f"fine-tune {layers} layer(s){', last re-initialised' if reinit else ''}, "
                                   f"Adam lr {lr:g}"))
    for percent in (20, 50, 80):
        register_attack(Attack(f"prune{percent}", "pruning", _pruning(percent / 100, False),
                               f"magnitude pruning of {percent}% of each layer's weights"))
        register_attack(Attack(f"prune{percent}_ft", "pruning", _pruning(percent / 100, True),
                               f"magnitude pruning of {percent}%, then fine-tuning with the zeros kept"))
    register_attack(Attack("struct25", "pruning", _structured(0.25, False),
                           "structured pruning of a quarter of the hidden units/channels"))
    register_attack(Attack("struct25_ft", "pruning", _structured(0.25, True),
                           "structured pruning of a quarter of the hidden units, then fine-tuning"))
    register_attack(Attack("fp16", "quantization", lambda model, context: to_float16(model),
                           "float16 round trip of every parameter and buffer"))
    for bits in (8, 4):
        register_attack(Attack(f"int{bits}", "quantization",
                               _quantized(bits),
                               f"symmetric per-tensor {bits}-bit weight rounding"))
    for percent in (1, 5, 10):
        register_attack(Attack(f"noise{percent}", "noise",
                               _noisy(percent / 100),
                               f"Gaussian weight noise at {percent}% of each tensor's std"))
    register_attack(Attack("permute", "obfuscation", lambda model, context: permute_units(model, seed=context.seed),
                           "random permutation of the hidden units"))
    register_attack(Attack("rescale", "obfuscation", lambda model, context: rescale_units(model, seed=context.seed),
                           "positive rescaling of the hidden units across ReLU, factors in [0.5, 2]"))
    register_attack(Attack("permute_rescale", "obfuscation",
                           lambda model, context: rescale_units(permute_units(model, seed=context.seed),
                                                                seed=context.seed + 1),
                           "permutation then positive rescaling of the hidden units"))
    register_attack(combine("prune50_ft_int8", "prune50_ft", "int8",
                            description="magnitude pruning of 50%, fine-tuning, int8 weight rounding"))
    register_attack(Attack("distill_same", "extraction", _distillation(True),
                           "distillation into a re-initialised student of the owner's architecture"))
    register_attack(Attack("distill_other", "extraction", _distillation(False),
                           "distillation into a student of another architecture"))


_register_standard()

#: The recipes every zoo of the benchmark runs (those registered above, whatever the network).
STANDARD_ATTACKS: tuple[str, ...] = tuple(ATTACKS)


def _register_batchnorm() -> None:
    register_attack(Attack("fold_bn", "obfuscation", lambda model, context: fold_batchnorm(model),
                           "every BatchNorm folded into the convolution before it"))
    register_attack(Attack("permute_fold_bn", "obfuscation",
                           lambda model, context: fold_batchnorm(permute_units(model, seed=context.seed)),
                           "random permutation of the hidden units, then BatchNorm folding"))


_register_batchnorm()

#: The recipes that apply only to networks with BatchNorm (the residual zoo runs them too).
BATCHNORM_ATTACKS: tuple[str, ...] = ("fold_bn", "permute_fold_bn")

#: The recipes that rescale hidden units: function-preserving only across a positively homogeneous
#: activation (``relu(c * z) = c * relu(z)`` for ``c > 0``). Across GELU (or LayerNorm, softmax)
#: rescaling changes the function, so :func:`~tafa.attacks.obfuscation.rescale_units` leaves such
#: units alone and refuses a network that has no other (a GELU MLP, the benchmark's transformer).
RESCALING_ATTACKS: tuple[str, ...] = ("rescale", "permute_rescale")

#: The standard recipes that apply to networks with smooth activations (GELU MLPs, attention):
#: all but :data:`RESCALING_ATTACKS`. Permuting hidden units stays exact for any elementwise
#: activation (a transformer's feed-forward units; :mod:`tafa.attacks.hidden_units`).
SMOOTH_ATTACKS: tuple[str, ...] = tuple(name for name in STANDARD_ATTACKS if name not in RESCALING_ATTACKS)
