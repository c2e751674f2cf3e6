"""Post-processing that makes derived copies of the owner's model.

Each attack is a small pure function: it deep-copies its input model (never modifying
it), is seeded and deterministic, and returns a new ``nn.Module`` in eval mode. The
registry (:data:`ATTACKS`) names the standard recipes of the benchmark, each with a
family, behind one verb, :meth:`Attack.apply`.

>>> import torch
>>> from tafa.bench.architectures import build
>>> from tafa.bench.datasets import load_task
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> context = AttackContext(data=load_task("digits").split("other"), seed=0, epochs=1)
>>> copy = get_attack("permute").apply(owner, context)
>>> x = torch.rand(3, 1, 8, 8)
>>> bool(torch.allclose(copy(x), owner(x), atol=1e-5))
True
>>> [name for name, attack in ATTACKS.items() if attack.family == "quantization"]
['fp16', 'int8', 'int4']
"""

from .extraction import distill, mlp_student, reinitialised
from .finetune import finetune
from .noise import add_weight_noise
from .obfuscation import fold_batchnorm, permute_units, rescale_units
from .pruning import magnitude_prune, structured_prune
from .quantize import quantize, to_float16
from .registry import (ATTACKS, BATCHNORM_ATTACKS, FAMILIES, LARGE_LR, RESCALING_ATTACKS, SMALL_LR, SMOOTH_ATTACKS,
                       STANDARD_ATTACKS, Attack, AttackContext, combine, get_attack, register_attack)

__all__ = [
    "ATTACKS", "BATCHNORM_ATTACKS", "FAMILIES", "LARGE_LR", "RESCALING_ATTACKS", "SMALL_LR", "SMOOTH_ATTACKS",
    "STANDARD_ATTACKS", "Attack",
    "AttackContext", "add_weight_noise", "combine", "distill", "finetune", "fold_batchnorm", "get_attack",
    "magnitude_prune", "mlp_student", "permute_units", "quantize", "register_attack", "reinitialised",
    "rescale_units", "structured_prune", "to_float16",
]
