"""The benchmark's scenarios, one per task kind, each a list of zoos, at two sizes.

``full`` follows ``benchmark.md``: classification (MLP and small CNN on digits, LeNet and a
small ResNet on MNIST-5k, and outside the ReLU family a GELU MLP and a small transformer on
digits), regression (MLP on diabetes and on Friedman #1), generation (VAE decoder on digits);
every zoo has 28 derived copies (26 post-processing recipes and 2 extractions; the ResNet 30,
its obfuscations include BatchNorm folding; the GELU and transformer zoos 26, without the two
unit-rescaling obfuscations, which are not function-preserving across GELU).
Each scenario has at least 100 scored independent models (34 per classification zoo, 50 per
regression zoo, 100 for the decoder), cycling over the independent families (same
architecture on either half of the data, each other architecture), and calibration models
drawn from the same families (40 per classification zoo: 19 is the least the rank bound at
alpha = 0.05 needs, and with the least the rate a given calibration set actually has varies
about as much as alpha itself (measured for the scan's null panel, docs/scaling.md); 100 per
regression or decoder zoo, where models train in a fraction of a
second, enough for the distribution-free bound at alpha = 0.01). Four models trained from
the owner's initialisation on other data form the "shares the owner's initialisation" row.
A learned verifier trains on 14 post-processed copies and 10 retrainings the owner makes
from its own data, or (data-free) on 14 copies made with synthetic inputs and 8 distilled
look-alikes. ``smoke`` is a minute-long subset
that checks the pipeline end to end.

Shared public parents (:data:`PARENT_ZOOS`, one per task kind, in ``full`` only: every scheme
runs twice on them, which would more than double ``smoke``): a digits MLP
and a digits VAE decoder pretrained on the digits of classes 0-4, a Friedman #1 regressor
pretrained on a related target; the owner fine-tunes the parent on its half, 60 scored and
40 calibration siblings fine-tune it on the other half (six recipes: the owner's learning
rate, half and twice it, half and twice its epochs, 60% of the half), and the owner's
fine-tune goes through every attack. The parent itself is one more scored negative.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..attacks import BATCHNORM_ATTACKS, RESCALING_ATTACKS, SMOOTH_ATTACKS, STANDARD_ATTACKS
from ..attacks.extraction import DISTILL_EPOCHS
from ..attacks.references import DATA_FREE_POSITIVES
from .parents import ParentSpec
from ..errors import InvalidParameter
from .zoo import Zoo, ZooSpec, build_zoos

_REFERENCES: dict[str, Any] = dict(training_positives=DATA_FREE_POSITIVES, training_negatives=10,
                   free_positives=DATA_FREE_POSITIVES, free_negatives=8)


#: The part of a rescaling recipe that applies where rescaling does not (``None``: nothing does).
_WITHOUT_RESCALING = {"permute_rescale": "permute", "rescale": None}


def _references(spec: ZooSpec) -> dict[str, Any]:
    """:data:`_REFERENCES`, where ``spec``'s attacks leave out the rescaling recipes (they do not
    apply to its networks: the smooth-activation zoos) with the part of them that applies instead
    (``permute_rescale`` -> ``permute``), so that the owner's references keep an obfuscated copy."""
    skipped = set(RESCALING_ATTACKS) - set(spec.attacks)
    kept = (_WITHOUT_RESCALING[name] if name in skipped else name for name in DATA_FREE_POSITIVES)
    positives = tuple(name for name in kept if name is not None)
    return {**_REFERENCES, "training_positives": positives, "free_positives": positives}


#: (scored independent models, calibration models) per zoo, by scenario (>= 100 scored per scenario).
_NEGATIVES = {"classification": (34, 40), "regression": (50, 100), "generation": (100, 100)}

#: The pooled entry of the zoos outside the ReLU family.
SMOOTH_POOL = "smooth activations"

FULL: tuple[ZooSpec, ...] = tuple(replace(spec, **_references(spec), independent=_NEGATIVES[spec.scenario][0],
                                          calibration=_NEGATIVES[spec.scenario][1]) for spec in (
    ZooSpec("digits-mlp", "classification", "digits", "mlp", "box:0,1", epochs=20,
            other_archs=("mlp_wide", "mlp_deep", "cnn")),
    ZooSpec("digits-cnn", "classification", "digits", "cnn", "box:0,1", epochs=20,
            other_archs=("cnn_wide", "mlp", "mlp_wide")),
    # fine-tunes of a few epochs (attack_epochs); students trained from scratch for a distillation's
    # epochs, as every other zoo's (docs/results.md, session 22)
    ZooSpec("mnist-lenet", "classification", "mnist", "lenet", "box:0,1", epochs=8,
            other_archs=("cnn", "mlp"), attack_epochs=3, distill_epochs=DISTILL_EPOCHS),
    # the real-size zoo: a residual network (BatchNorm, residual additions, max-pooling, global
    # average pooling); its obfuscations also fold the BatchNorms; independents: a narrower one, LeNet
    ZooSpec("mnist-resnet", "classification", "mnist", "resnet_zoo", "box:0,1", epochs=4, lr=3e-3,
            other_archs=("lenet", "resnet_zoo_narrow"), attack_epochs=2, distill_epochs=DISTILL_EPOCHS,
            attacks=STANDARD_ATTACKS + BATCHNORM_ATTACKS, interfaces=False),
    # outside the ReLU family (where networks are going): a GELU MLP, and a two-layer pre-norm
    # transformer on the digits as 16 patches of 2x2 (LayerNorm, softmax attention, GELU). Not
    # piecewise-linear: tafa's probes are made black-box for them. The unit-rescaling obfuscations
    # are left out (SMOOTH_ATTACKS: not function-preserving across GELU), so are the interface and
    # evasion families (cost, as for the ResNet zoo: ZooSpec.interfaces). Pooled apart
    # (SMOOTH_POOL), so the ReLU zoos' classification pool stays comparable with earlier runs
    ZooSpec("digits-mlp-gelu", "classification", "digits", "mlp_gelu", "box:0,1", epochs=20,
            other_archs=("mlp_gelu_wide", "mlp"), attacks=SMOOTH_ATTACKS, pool=SMOOTH_POOL,
            interfaces=False),
    ZooSpec("digits-attention", "classification", "digits", "transformer", "box:0,1", epochs=30, lr=3e-3,
            other_archs=("transformer_wide", "mlp_gelu"), attacks=SMOOTH_ATTACKS, pool=SMOOTH_POOL,
            interfaces=False),
    ZooSpec("diabetes-mlp", "regression", "diabetes", "mlp_small", "box:-2,2", epochs=100, weight_decay=1e-3,
            other_archs=("mlp", "mlp_deep")),
    ZooSpec("friedman-mlp", "regression", "friedman", "mlp_small", "box:-2,2", epochs=30, weight_decay=1e-4,
            other_archs=("mlp", "mlp_wide")),
    ZooSpec("digits-vae", "generation", "digits", "decoder", "gaussian", epochs=30, lr=2e-3, latent=8,
            other_archs=("decoder_wide",)),
))

_SMOKE_ATTACKS = ("int8", "prune50", "ft_all_small", "permute", "noise5", "distill_same")

#: One shared-parent zoo per task kind (see the module doc); siblings train in a fraction of a second.
PARENT_ZOOS: tuple[ZooSpec, ...] = tuple(replace(spec, **_REFERENCES, independent=60, calibration=40, same_init=0)
                                         for spec in (
    ZooSpec("digits-mlp-parent", "classification", "digits", "mlp", "box:0,1", epochs=5,
            other_archs=("mlp_wide",), parent=ParentSpec("digits-0-4", epochs=20)),
    ZooSpec("friedman-mlp-parent", "regression", "friedman", "mlp_small", "box:-2,2", epochs=10, weight_decay=1e-4,
            other_archs=("mlp",), parent=ParentSpec("friedman-related", epochs=30)),
    ZooSpec("digits-vae-parent", "generation", "digits", "decoder", "gaussian", epochs=10, lr=2e-3, latent=8,
            other_archs=("decoder_wide",), parent=ParentSpec("digits-0-4", epochs=30, lr=2e-3)),
))
FULL = FULL + PARENT_ZOOS

SMOKE: tuple[ZooSpec, ...] = tuple(
    replace(spec, attacks=_SMOKE_ATTACKS, independent=3, same_init=1, calibration=4,
            epochs=max(3, spec.epochs // 4), attack_epochs=2,
            training_positives=("int8", "ft_all_small", "prune50"), training_negatives=3,
            free_positives=("int8", "noise5", "prune50"), free_negatives=2)
    for spec in FULL if spec.name in ("digits-mlp", "diabetes-mlp", "digits-vae"))

SIZES = {"smoke": SMOKE, "full": FULL}


def cached_zoo(name: str, cache: str | Path, roles: tuple[str, ...] = ("scored", "calibration")) -> tuple[ZooSpec, Zoo]:
    """The full benchmark's zoo ``name`` with the models of ``roles`` (and the owner), from ``cache``
    (trained there first where missing): what the measurement scripts of ``benchmarks/`` start from."""
    spec = next((spec for spec in FULL if spec.name == name), None)
    if spec is None:
        raise InvalidParameter(f"No zoo {name!r} in the full benchmark; zoos: {', '.join(s.name for s in FULL)}.")
    (zoo,) = build_zoos([spec], Path(cache), progress=False, roles=list(roles))
    return spec, zoo
