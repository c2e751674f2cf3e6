"""The first stage on the classes a top-k list shows (issue 20).

A top-k service answers exact probabilities for its ``k`` leading classes and zeros for the rest.
The first stage's answers already hold what it needs for those classes: the derivatives of a shown
class's log-probability are the logit's, less one shift common to every class at that input (the
log-sum-exp), which centring across the classes removes. What they cannot hold is a zeroed class:
:func:`~tafa.signature.interface.recognise` puts it at a floor, whose derivatives are the floor's,
not the model's. So, per probe, only the classes shown at *every* input of the probe (its centre and
each ``x +- h u``) are compared: the owner's and the suspect's derivatives of those classes, centred
across them, then within the owner's direction groups with each class's mean over the group's probes
that show it, by cosine (:func:`tafa.functional.shown_cosines`); the score is the median over the
probes showing at least two classes. An exact copy behind a top-3 list scores 1, as it does with
its logits; the references are asked through the same list (:func:`tafa.label_stage.replays`), since
an innocent service would answer through it too.

It costs no query: the suspect's answers at the first stage's inputs are those already asked.
It decides suspects recognised as a top-k list not on a grid, with the data-free label stage and the
coarse scale (``tafa.fingerprint.Fingerprint.verify``); measured in docs/method.md ("The first stage
on the shown classes").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .decide.similarity import Score
from .functional import shown_cosines
from .models.base import Model
from .probes.base import Probes
from .signature.base import Signature
from .signature.derivatives import Derivatives
from .signature.interface import Recognised, recognise

#: The stage's name in a verdict's stages (after the first stage's scheme name).
SHOWN_STAGE = "shown classes"


class ShownStage:
    """The first stage's comparison on the outputs a suspect shows (module doc): its measurement,
    probes and the owner's signature."""

    def __init__(self, measurement: Derivatives, probes: Probes, owner: Signature,
                 counts: np.ndarray | None = None) -> None:
        self.measurement = measurement
        self.probes = probes
        self.owner = owner
        self.groups = np.asarray(probes.extra["group"]).astype(int)
        #: How many values the suspect showed at each input (``None``: every value a model answers):
        #: a model scored here shows as many, its largest, so that a list whose length moves with the
        #: input is replayed as it was answered, not longer (more classes would make another statistic).
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64).reshape(-1)

    @classmethod
    def applies(cls, measurement: object, probes: Probes, owner: Signature) -> bool:
        """Whether a first stage can be read this way: directional derivatives (fixed inputs) in
        direction groups, of an owner with several outputs."""
        return (isinstance(measurement, Derivatives) and not measurement.adaptive and "group" in probes.extra
                and "derivatives" in owner and np.shape(owner["outputs"])[-1] >= 2)

    def compare(self, recognised: Recognised) -> Score:
        """The score of answers at the first stage's inputs, as ``recognised`` (its ``hidden`` values
        left out; every value is shown when it has none)."""
        answers = np.asarray(recognised.answers, dtype=np.float64)
        signature = self.measurement.assemble(self.probes, answers)
        hidden = recognised.hidden if recognised.hidden is not None else np.zeros(
            (len(answers), np.shape(self.owner["outputs"])[-1]), dtype=bool)
        shown = ~self.measurement.unknown(self.probes, hidden)
        cosines = shown_cosines(self.owner["derivatives"], signature["derivatives"], shown, self.groups)
        usable = np.isfinite(cosines)
        value = float(np.median(cosines[usable])) if usable.any() else 0.0
        return Score(value, cosines[usable], {"local": value})

    def score(self, model: Model) -> Score:
        """``model`` asked at the first stage's inputs and compared on the outputs it shows (at each
        input no more than the suspect showed there, its largest)."""
        answers = model(self.measurement.inputs(self.probes))
        recognised = recognise(answers, self.owner.get("outputs"))
        if self.counts is None:
            return self.compare(recognised)
        values = np.asarray(recognised.answers, dtype=np.float64).reshape(len(answers), -1)
        if recognised.hidden is not None:
            values = np.where(recognised.hidden, -np.inf, values)
        ranks = np.argsort(np.argsort(-values, axis=1, kind="stable"), axis=1)
        hidden = ranks >= self.counts[:, None]
        if recognised.hidden is not None:
            hidden |= recognised.hidden
        return self.compare(replace(recognised, hidden=hidden))


__all__ = ["SHOWN_STAGE", "ShownStage"]
