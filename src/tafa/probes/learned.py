"""MetaV's adaptive fingerprint (Pan, Yan, Zhang, Yang, "MetaV: A Meta-Verifier Approach
to Task-Agnostic Model Fingerprinting", KDD 2022): fingerprint inputs learned jointly with
a meta-verifier on reference models.

The owner knows two sets of models: positives (its own model and copies derived from it
by post-processing) and negatives (independently trained models of the same task). The
``N`` fingerprint inputs are parameters; so are the weights of a small MLP (the
meta-verifier, :mod:`tafa.decide.metav`) that reads any model's outputs at those inputs,
concatenated, and says "derived" (1) or "independent" (0). Both are trained on binary
cross-entropy, alternating, as in the paper:

1. every model answers the current inputs (white box: the references are torch modules);
2. verifier step: one Adam step on the verifier weights, inputs fixed;
3. input step: one Adam step on the inputs against the updated verifier, the gradient
   flowing back through every reference model; the inputs are then clipped into the
   domain's bounds.

The strategy returns the learned inputs only. The fingerprint then measures the owner and
every reference at them (black box, as a suspect will be measured) and
:meth:`~tafa.decide.metav.MetaVerifier.fit` trains the verifier afresh on those
signatures: the last verifier step of the alternation, taken to convergence with the
inputs frozen, on exactly the numbers a suspect's verification will see. The verifier
trained here only shapes the inputs and is not kept.

Defaults and where they come from:

- The owner is one of the positives (as in the paper's pirated set) when it is white box;
  a black-box owner is left out of this training (its references still train the inputs)
  and the probes record it.
- Inputs start from ``N`` rows of the owner's data (``data``) when given, as the paper
  initialises its fingerprint from training samples, else from draws of the domain.
- ``N``: the scheme's ``points`` (64: the planning run in the project's method notes; the
  paper's default fingerprint is larger, about 100 inputs as we recall it, not checked
  against the text).
- Verifier ``Linear(N*m, 128)-ReLU-Linear(128, 1)``, Adam ``1e-3`` (see
  :mod:`tafa.decide.metav`); ``steps = 300`` alternations (the planning run); inputs by
  Adam at ``input_lr = 0.01`` of the domain's width per step (:meth:`~tafa.domain.Domain.scale`).
  The paper's exact schedule and learning rates could not be checked here; these are the
  values the project's planning run used.
- Outputs are standardised per coordinate before the verifier (the statistics of the
  current step's reference outputs, held fixed for the gradient), as the fitted verifier
  does with the references' statistics; see :mod:`tafa.decide.metav` for why.
- Seeded and deterministic: the starting inputs come from ``seed``, the verifier's initial
  weights from a generator seeded by ``seed``, and everything runs on one torch thread.

>>> from tafa.domain import Box
>>> from tafa.bench.architectures import build
>>> from tafa.models import TorchModel
>>> from tafa.attacks import add_weight_noise
>>> from tafa.references import References
>>> owner = build("mlp", input_shape=(4,), output_dim=3, seed=0)
>>> refs = References(positives=[add_weight_noise(owner, 0.05, seed=1)],
...                   negatives=[build("mlp", input_shape=(4,), output_dim=3, seed=s) for s in (1, 2)])
>>> probes = MetaVProbes(steps=20).select(TorchModel(owner, (4,)), Box((4,), 0, 1), n=5, k=0, seed=0,
...                                       references=refs)
>>> probes.points.shape, bool(np.all((probes.points >= 0) & (probes.points <= 1)))
((5, 4), True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..domain import Domain
from ..errors import InvalidParameter, NonFiniteOutput, ShapeMismatch, check_param
from ..functional import balanced_bce, initial_parameters, standardisation, verifier_logits
from ..models.base import Model, module_dtype
from ..threads import one_torch_thread
from .base import ProbeStrategy, Probes, register_probes, seed_inputs

if TYPE_CHECKING:
    import torch

    from ..references import References


@register_probes("metav")
class MetaVProbes(ProbeStrategy):
    """Inputs learned jointly with a meta-verifier on the references (see module doc).

    ``steps``: alternations (one verifier step and one input step each); ``hidden``,
    ``verifier_lr``, ``weight_decay`` and ``clip``: the verifier's (as
    :class:`~tafa.decide.metav.MetaVerifier`); ``input_lr``: the inputs' Adam learning rate
    as a fraction of the domain's width.
    """

    def __init__(self, steps: int = 300, hidden: int = 128, verifier_lr: float = 1e-3, input_lr: float = 0.01,
                 weight_decay: float = 0.0, clip: float = 10.0, start: str = "data", invert_steps: int = 100) -> None:
        caller = "MetaVProbes"
        check_param("start", start, "one of 'data', 'domain', 'inverted'", start in ("data", "domain", "inverted"),
                    caller=caller)
        check_param("invert_steps", invert_steps, "an integer >= 0",
                    isinstance(invert_steps, int) and invert_steps >= 0, caller=caller)
        self.start, self.invert_steps = start, invert_steps
        check_param("steps", steps, "an integer >= 0", isinstance(steps, int) and steps >= 0, caller=caller)
        check_param("hidden", hidden, "an integer >= 1", isinstance(hidden, int) and hidden >= 1, caller=caller)
        for name, value in (("verifier_lr", verifier_lr), ("input_lr", input_lr)):
            check_param(name, value, "a number > 0", isinstance(value, (int, float)) and value > 0, caller=caller)
        check_param("weight_decay", weight_decay, "a number >= 0",
                    isinstance(weight_decay, (int, float)) and weight_decay >= 0, caller=caller)
        check_param("clip", clip, "a number > 0", isinstance(clip, (int, float)) and clip > 0, caller=caller)
        self.steps, self.hidden = steps, hidden
        self.verifier_lr, self.input_lr = float(verifier_lr), float(input_lr)
        self.weight_decay, self.clip = float(weight_decay), float(clip)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        if references is None or not references.positives or not references.negatives:
            raise InvalidParameter("MetaV learns its fingerprint inputs on reference models: pass references="
                                   "References(positives=[...], negatives=[...]) with at least one of each.")
        rng = np.random.default_rng(seed)
        points, source = seed_inputs(domain, n, rng, data if self.start == "data" else None)
        module = owner.torch_module() if owner is not None else None
        if self.start == "inverted" and module is not None and self.invert_steps > 0:
            from .relu import invert_in  # the region-centred probes' pull towards confident inputs

            with one_torch_thread():
                points = invert_in(module.eval(), points, domain, self.invert_steps, rng)
            source = "inverted"
        positives = ([module] if module is not None else []) + list(references.positives)
        models = [m.eval() for m in [*positives, *references.negatives]]
        labels = np.array([1.0] * len(positives) + [0.0] * len(references.negatives))
        learned, report = self._learn(models, labels, points, domain, seed, progress)
        info: dict[str, Any] = {"strategy": "metav", "source": source, "steps": self.steps,
                                "positives": len(positives), "negatives": len(references.negatives),
                                "owner_in_training": module is not None,
                                "analysis": "white-box references" + ("" if module is not None else
                                                                      " (black-box owner left out of training)"),
                                **report}
        return Probes(learned, info=info)

    def _learn(self, models: list[torch.nn.Module], labels: np.ndarray, points: np.ndarray, domain: Domain,
               seed: int, progress: bool) -> tuple[np.ndarray, dict[str, float | None]]:
        """Alternate verifier and input steps; the learned inputs and the last step's loss and
        training accuracy (``None`` after no step)."""
        import torch

        lo, hi = (torch.from_numpy(bound) for bound in domain.bounds())
        dtypes = [module_dtype(m) for m in models]
        y = torch.from_numpy(labels)
        x = torch.from_numpy(np.array(points, dtype=np.float64))
        with torch.no_grad():  # N * m, the verifier's input size, the same for every model
            widths = [int(m(x.to(dtype)).numel()) for m, dtype in zip(models, dtypes)]
        if len(set(widths)) > 1:
            raise ShapeMismatch(f"The reference models answer {sorted(set(widths))} outputs at the {len(x)} inputs; "
                                "they must all have the owner's output shape.")
        width = widths[0]
        x.requires_grad_(True)
        input_optimiser = torch.optim.Adam([x], lr=self.input_lr * domain.scale())
        parameters = initial_parameters(width, self.hidden, seed)
        verifier_optimiser = torch.optim.Adam(parameters, lr=self.verifier_lr, weight_decay=self.weight_decay)
        loss: float | None = None
        accuracy: float | None = None
        with one_torch_thread():
            for _ in tqdm(range(self.steps), desc="probes: MetaV", disable=not progress, leave=False):
                rows = torch.stack([m(x.to(dtype)).double().reshape(-1) for m, dtype in zip(models, dtypes)])
                if not torch.isfinite(rows).all():
                    raise NonFiniteOutput("A reference model answered NaN or inf at the MetaV inputs.")
                mean, scale = (torch.from_numpy(a) for a in standardisation(rows.detach().numpy()))
                z = ((rows - mean) / scale).clamp(-self.clip, self.clip)
                verifier_optimiser.zero_grad()
                balanced_bce(verifier_logits(parameters, z.detach()), y).backward()
                verifier_optimiser.step()
                logits = verifier_logits(parameters, z)
                objective = balanced_bce(logits, y)
                (gradient,) = torch.autograd.grad(objective, x)
                input_optimiser.zero_grad()
                x.grad = gradient
                input_optimiser.step()
                with torch.no_grad():
                    x.copy_(torch.minimum(torch.maximum(x, lo), hi))
                loss = float(objective.detach())
                accuracy = float(((logits.detach() > 0).double() == y).double().mean())
        return x.detach().numpy().copy(), {"final_loss": loss, "train_accuracy": accuracy}
