"""MetaV's meta-verifier (Pan, Yan, Zhang, Yang, "MetaV: A Meta-Verifier Approach to
Task-Agnostic Model Fingerprinting", KDD 2022): a small MLP that maps a suspect's outputs
at the fingerprint inputs, concatenated, to the probability that it was derived from the
owner's model.

The fingerprint inputs and the verifier are trained jointly, owner side, by the ``metav``
probe strategy (:mod:`tafa.probes.learned`); :meth:`MetaVerifier.fit` is the last step
of that alternation: with the inputs now fixed, it trains the verifier afresh on the
black-box signatures (outputs at the learned inputs) of the owner and its positive
references (label 1) and of the negative references (label 0). The fitted parameters
travel inside the fingerprint file (:meth:`~MetaVerifier.state`).

Choices, and why:

- Architecture ``Linear(N*m, hidden)-ReLU-Linear(hidden, 1)``, ``hidden = 128``, the
  planning run of the project's method notes; the paper's meta-verifier is likewise a
  small fully connected network over the concatenated outputs.
- Loss: binary cross-entropy, each class weighted to half the total (balanced), so a
  reference set with more copies than independent models does not tilt the prior.
- Optimiser: full-batch Adam, learning rate ``1e-3``, ``steps = 300`` (the planning run),
  no weight decay; float64 throughout, weights drawn from a generator seeded by ``seed``,
  so the same references and seed give the same verifier, bit for bit, on one machine.
- Output normalisation (not in the paper, which feeds raw outputs): every output
  coordinate is standardised with the mean and standard deviation over the training
  references (stored in the state). Raw logits, regression values and pixel outputs
  differ in scale by orders of magnitude between tasks and between probes; standardised,
  one learning rate fits all three task kinds. A coordinate on which every reference
  agrees gets a floor of ``1e-3`` times the median deviation instead of zero, and the
  standardised values are clipped to ``[-clip, clip]`` (``clip = 10``): training rows
  never reach it (``|z| <= sqrt(M - 1)`` for ``M`` rows, Samuelson's inequality, so up to
  101 references), while a suspect far outside the references cannot drive the
  piecewise-linear verifier arbitrarily far along one direction.

The score is the probability (``score_range = (0, 1)``); ``parts`` carry the logit.
``per_point`` is, for each probe, ``1 / (1 + rms)`` of the standardised difference between
the suspect's and the owner's outputs there: 1 where they agree, for the verdict's table
only (the verifier does not use it).

>>> rng = np.random.default_rng(0)
>>> owner = {"outputs": rng.normal(size=(8, 3))}
>>> near = lambda: {"outputs": owner["outputs"] + 0.05 * rng.normal(size=(8, 3))}
>>> far = lambda: {"outputs": rng.normal(size=(8, 3))}
>>> verifier = MetaVerifier(steps=200)
>>> verifier.fit(owner, [near() for _ in range(5)], [far() for _ in range(5)], seed=0)
>>> verifier.compare(owner, near()).value > 0.5 > verifier.compare(owner, far()).value
True
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameter, ShapeMismatch, check_param
from ..functional import balanced_bce, initial_parameters, standardisation, verifier_logits
from ..signature.base import Signature
from ..threads import one_torch_thread
from .learned import LearnedSimilarity
from .similarity import Score, register_similarity

#: The arrays of a fitted meta-verifier, in :meth:`MetaVerifier.state` order.
STATE_KEYS = ("mean", "scale", "w1", "b1", "w2", "b2")


def train_verifier(rows: np.ndarray, labels: np.ndarray, *, hidden: int, steps: int, lr: float,
                   weight_decay: float, clip: float, seed: int) -> dict[str, np.ndarray]:
    """A meta-verifier trained from scratch on ``rows`` (``(M, D)`` raw outputs) and
    ``labels`` (1 derived, 0 independent): its state (see :data:`STATE_KEYS`). Only training
    needs torch (applying the verifier is numpy)."""
    import torch

    mean, scale = standardisation(rows)
    z = torch.from_numpy(np.clip((rows - mean) / scale, -clip, clip))
    y = torch.from_numpy(np.asarray(labels, dtype=np.float64))
    parameters = initial_parameters(z.shape[1], hidden, seed)
    optimiser = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    with one_torch_thread():  # tiny full-batch steps: one thread is fastest and reproducible
        for _ in range(steps):
            optimiser.zero_grad()
            balanced_bce(verifier_logits(parameters, z), y).backward()
            optimiser.step()
    w1, b1, w2, b2 = (p.detach().numpy().copy() for p in parameters)
    return {"mean": mean, "scale": scale, "w1": w1, "b1": b1, "w2": w2, "b2": b2}


@register_similarity("meta-verifier")
class MetaVerifier(LearnedSimilarity):
    """MetaV's meta-verifier over the ``outputs`` signature (see module doc)."""

    def __init__(self, hidden: int = 128, steps: int = 300, lr: float = 1e-3, weight_decay: float = 0.0,
                 clip: float = 10.0, keys: tuple[str, ...] = ("outputs",)) -> None:
        caller = "MetaVerifier"
        keys = tuple(keys)
        check_param("keys", keys, "a non-empty tuple of signature keys", len(keys) > 0 and
                    all(isinstance(key, str) for key in keys), caller=caller)
        self.keys = keys
        check_param("hidden", hidden, "an integer >= 1", isinstance(hidden, int) and hidden >= 1, caller=caller)
        check_param("steps", steps, "an integer >= 0", isinstance(steps, int) and steps >= 0, caller=caller)
        check_param("lr", lr, "a number > 0", isinstance(lr, (int, float)) and lr > 0, caller=caller)
        check_param("weight_decay", weight_decay, "a number >= 0",
                    isinstance(weight_decay, (int, float)) and weight_decay >= 0, caller=caller)
        check_param("clip", clip, "a number > 0", isinstance(clip, (int, float)) and clip > 0, caller=caller)
        self.hidden, self.steps, self.lr = hidden, steps, float(lr)
        self.weight_decay, self.clip = float(weight_decay), float(clip)
        self._state: dict[str, np.ndarray] = {}

    @property
    def fitted(self) -> bool:
        return bool(self._state)

    def fit(self, owner: Signature, positives: list[Signature], negatives: list[Signature], seed: int = 0) -> None:
        """Train on the owner and ``positives`` (label 1) and ``negatives`` (label 0)."""
        if len(positives) < 1 or len(negatives) < 1:
            raise InvalidParameter("The meta-verifier needs at least 1 positive and 1 negative reference "
                                   f"(got {len(positives)} and {len(negatives)}).")
        signatures = [owner, *positives, *negatives]
        size = self._row(owner).size
        if any(self._row(s).size != size for s in signatures):
            raise ShapeMismatch("The reference signatures do not all have the owner's number of outputs "
                                f"({size}).")
        rows = np.stack([self._row(s) for s in signatures])
        labels = np.array([1.0] * (1 + len(positives)) + [0.0] * len(negatives))
        self._state = train_verifier(rows, labels, hidden=self.hidden, steps=self.steps, lr=self.lr,
                                     weight_decay=self.weight_decay, clip=self.clip, seed=seed)

    def _row(self, signature: Signature) -> np.ndarray:
        """The signature's arrays named by ``keys``, flattened and concatenated."""
        missing = [key for key in self.keys if key not in signature]
        if missing:
            raise ShapeMismatch(f"The meta-verifier reads {list(self.keys)}; the signature lacks {missing}.")
        return np.concatenate([np.asarray(signature[key], dtype=np.float64).ravel() for key in self.keys])

    def _standardised(self, signature: Signature) -> np.ndarray:
        row = self._row(signature)
        if row.size != self._state["mean"].size:
            raise ShapeMismatch(f"The meta-verifier was fitted on {self._state['mean'].size} outputs; "
                                f"the signature has {row.size}.")
        return np.clip((row - self._state["mean"]) / self._state["scale"], -self.clip, self.clip)

    def logit(self, suspect: Signature) -> float:
        """The verifier's logit for ``suspect`` (its log-odds of being derived)."""
        if not self.fitted:
            raise InvalidParameter("The meta-verifier has not been fitted (Fingerprint.create with references).")
        z = self._standardised(suspect)
        state = self._state
        hidden = np.maximum(state["w1"] @ z + state["b1"], 0.0)
        return float(hidden @ state["w2"] + state["b2"][0])

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        logit = self.logit(suspect)
        probability = float(0.5 * (1.0 + np.tanh(0.5 * logit)))  # the logistic function, overflow-free
        points = len(np.asarray(owner["outputs"]))
        difference = self._standardised(suspect) - self._standardised(owner)
        sizes = np.cumsum([np.asarray(owner[key]).size for key in self.keys])[:-1]
        difference = np.hstack([part.reshape(points, -1) for part in np.split(difference, sizes)])
        rms = np.sqrt(np.mean(difference ** 2, axis=1))
        return Score(probability, 1.0 / (1.0 + rms), {"logit": logit, "distance": float(np.sqrt(np.mean(rms ** 2)))})

    def state(self) -> dict[str, np.ndarray]:
        return {key: np.array(self._state[key], dtype=np.float64) for key in STATE_KEYS} if self.fitted else {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise InvalidParameter(f"The meta-verifier state lacks {missing}.")
        self._state = {key: np.array(state[key], dtype=np.float64) for key in STATE_KEYS}
