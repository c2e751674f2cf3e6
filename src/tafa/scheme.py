"""Schemes: one probe strategy + one signature + one similarity, looked up by name.

The project's method and every baseline are rows of one table (:data:`SCHEMES`); adding a
scheme means registering one :class:`Scheme`, never writing a parallel pipeline. The published
baselines register theirs in :mod:`tafa.baseline_schemes`, which the table imports on its
first read: this module never imports it.

>>> get_scheme("tafa").signature
'derivatives'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .components import Table
from .decide import baseline_similarities as _baseline_similarities  # noqa: F401  (a stored scheme may name them)
from .decide.similarity import Similarity, get_similarity
from .probes.base import CandidateCache, ProbeStrategy, get_probes
from .signature.base import Measurement, get_signature


class ReferenceSource(str, Enum):
    """Where a scheme's reference models (positives and negatives) come from.

    A ``str`` enum: its values are what scheme files store, and it compares equal to them.
    """

    #: The scheme needs none (a fixed similarity rule).
    NONE = "none"
    #: The owner makes them from its own data and passes them (``references=References(...)``).
    DATA = "data"
    #: tafa makes them from the owner model and the domain alone
    #: (:func:`~tafa.attacks.references.data_free_references`).
    DATA_FREE = "data-free"


@dataclass(frozen=True)
class Scheme:
    """A named fingerprinting scheme and its default sizes."""

    name: str
    probes: str
    signature: str
    similarity: str
    points: int
    directions: int = 0
    probe_params: dict[str, Any] = field(default_factory=dict)
    signature_params: dict[str, Any] = field(default_factory=dict)
    similarity_params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tasks: tuple[str, ...] = ("classification", "regression", "generation")
    #: Whether ``tafa bench`` runs it by default (ablation variants do not).
    benchmark: bool = True
    #: Where the reference models a learned similarity (or a reference-guided probe
    #: selection) uses come from (a :class:`ReferenceSource`; its value is accepted too).
    references: ReferenceSource = ReferenceSource.NONE
    #: A second stage (another scheme's name): measured on the same owner when it applies
    #: (``Fingerprint.create``), run on a suspect only when the first stage does not already
    #: judge it derived, the two decided together with their shares of alpha (Bonferroni; see
    #: :class:`~tafa.decide.rule.Rule`).
    second: str | None = None
    #: The extraction stage (another scheme's name): measured on the same owner when it applies (a
    #: torch-module owner answering a vector of 2 to 1,000 values, no declared parent), run on a
    #: suspect only when the earlier stages do not already judge it derived, decided with them at
    #: its share of alpha. It looks for students distilled on the owner's answers, which neither
    #: the first stage nor the boundary geometry sees (their weights are fresh). An owner answering
    #: one value or an image (a regressor, a decoder: no confident inputs) gets the outputs stage
    #: instead (``tafa-outputs``; any owner, no declared parent), and the stored scheme names it.
    extraction: str | None = None
    #: The data-like stage (another scheme's name, ``tafa-datalike``): the first stage's signature at
    #: inputs in the style of real data (:mod:`~tafa.probes.datalike`), measured on the same owner (no
    #: declared parent), run on a suspect right after the first stage when it does not already judge it
    #: derived, decided with the others at its share of alpha. A router that serves its users' inputs
    #: from the copy and the rest from another model, blended so that no jump shows, answers these from
    #: the copy.
    data_style: str | None = None
    #: Not part of the scheme's identity (never saved): a cache the caller owns and hands to
    #: the probe strategy, so that creating fingerprints of one owner again with other
    #: references reuses the candidate probes (see :class:`~tafa.probes.base.CandidateCache`).
    candidate_cache: CandidateCache | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", ReferenceSource(self.references))

    def build(self) -> tuple[ProbeStrategy, Measurement, Similarity]:
        """Fresh instances of the three stages (the probe strategy given :attr:`candidate_cache`)."""
        strategy = get_probes(self.probes, **self.probe_params)
        strategy.candidate_cache = self.candidate_cache
        return strategy, self.make_signature(), self.make_similarity()

    def make_signature(self) -> Measurement:
        """A fresh instance of the signature stage."""
        return get_signature(self.signature, **self.signature_params)

    def make_similarity(self) -> Similarity:
        """A fresh instance of the similarity stage (unfitted, if it learns)."""
        return get_similarity(self.similarity, **self.similarity_params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "probes": self.probes, "signature": self.signature,
                "similarity": self.similarity, "points": self.points, "directions": self.directions,
                "probe_params": self.probe_params, "signature_params": self.signature_params,
                "similarity_params": self.similarity_params, "references": self.references.value,
                **({"second": self.second} if self.second else {}),
                **({"extraction": self.extraction} if self.extraction else {}),
                **({"data_style": self.data_style} if self.data_style else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scheme":
        return cls(**{key: data[key] for key in (
            "name", "probes", "signature", "similarity", "points", "directions", "probe_params",
            "signature_params", "similarity_params") if key in data}, references=data.get("references", "none"),
            second=data.get("second") or None, extraction=data.get("extraction") or None,
            data_style=data.get("data_style") or None)


#: Every scheme by name: tafa's own (below) and, on the table's first read, the published
#: baselines' (:mod:`tafa.baseline_schemes`, imported then).
SCHEMES: Table[Scheme] = Table("scheme", providers=("tafa.baseline_schemes",))

#: The scheme ``tafa fingerprint`` uses unless told otherwise.
DEFAULT_SCHEME = "tafa"

#: Whether this module's own schemes are all registered (then the baselines come next).
_OWN_REGISTERED = False


def register_scheme(scheme: Scheme) -> Scheme:
    """Make ``scheme`` available by its name."""
    if _OWN_REGISTERED:  # a scheme registered later comes after the baselines, and may replace one
        SCHEMES.load()
    SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``."""
    return SCHEMES.lookup(name)


register_scheme(Scheme(
    "tafa", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64, directions=4,
    second="tafa-boundary", extraction="tafa-students", data_style="tafa-datalike",
    description="data-free region-centred probes, outputs + directional derivatives; score: median per-point "
    "cosine of the group-centred derivatives (576 queries, and 576 at the coarse scale that decides rippled or "
    "rounded answers, with 2,112 more at steps jittered around it for those, whose outputs averaged there count "
    "for half of that score for owners answering one value or an image); owners whose first layer's lines "
    "can be aimed (fully connected, or convolutional with filters seeing at least 17 values; at most 2^25 gradient "
    "values) also get "
    "a second stage, boundary geometry (tafa-boundary, up to 5,162 queries, stopped once its threshold is out of "
    "reach), and owners answering a vector of "
    "values (classifiers) an extraction stage (tafa-students, 64 queries), owners answering one value or an image "
    "(regressors, decoders) the outputs stage instead (tafa-outputs, 64 queries), each run only when the earlier "
    "stages do not already judge the suspect derived; every owner also a data-like stage (tafa-datalike, 288 queries, "
    "run right after the first); each stage decides at its equal share of alpha"))
register_scheme(Scheme(
    "ablate-no-datalike", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, second="tafa-boundary", extraction="tafa-students", benchmark=False,
    description="tafa without its data-like stage (the default before session 23): what that stage adds, and what "
    "its share of alpha costs"))
register_scheme(Scheme(
    "ablate-stop-passed", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, second="ablate-boundary-bounded", extraction="tafa-students", benchmark=False,
    description="tafa whose second stage also stops once its threshold is surely passed (ablate-boundary-bounded): "
    "measured, not taken (docs/method.md, \"Stopping once passed\")"))
register_scheme(Scheme(
    "tafa-one-stage", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, description="tafa's first stage alone (the default before the boundary-geometry second stage)"))
register_scheme(Scheme(
    "tafa-learned", probes="relu", signature="derivatives", similarity="evidence", points=64, directions=4,
    references=ReferenceSource.DATA,
    description="tafa's probes and signature, decided by the evidence verifier (logistic "
    "regression over the local, derivative and output similarities) fitted on references the owner makes "
    "from its own data (post-processed copies, retrainings)"))
register_scheme(Scheme(
    "tafa-free", probes="relu", signature="derivatives", similarity="evidence", points=64, directions=4,
    references=ReferenceSource.DATA_FREE, description="as tafa-learned, with references made without any data: copies "
    "post-processed on synthetic owner-labelled inputs, and look-alikes distilled at random domain inputs"))
register_scheme(Scheme(
    "tafa-select", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64, directions=4,
    probe_params={"invert_steps": 100, "select_from": 4}, references=ReferenceSource.DATA_FREE,
    description="tafa's rule at probes chosen with data-free references: candidates pulled to inputs the owner "
    "is confident on, and the 8 of 32 direction groups where copies and look-alikes disagree most kept"))
register_scheme(Scheme(
    "tafa-extract", probes="relu", signature="outputs", similarity="output-agreement", points=64,
    probe_params={"invert_steps": 100},
    description="the extraction detector: how closely the suspect reproduces the owner's output values at "
    "inputs the owner is confident on (64 queries)"))
register_scheme(Scheme(
    "tafa-boundary", probes="boundary", signature="kinks", similarity="boundary-orientation", points=29,
    directions=16, similarity_params={"estimate": "full", "aggregation": "mean"}, benchmark=False,
    description="boundary geometry: lines along the owner's first-layer normals; on each, the suspect's strongest "
    "kink is located from outputs (scan + bisection) and its gradient jump measured in 16 directions (the owner's "
    "normal and 15 random ones, within the pixels a convolution's filter sees); score: mean over lines of the "
    "kink's estimated full-space |cosine| with the owner's own kink, or 1 where the suspect's derivative changes "
    "at the owner's exact crossing as the owner's does (5,162 adaptive queries: 178 per line); tafa's second stage"))
register_scheme(Scheme(
    "ablate-boundary-bounded", probes="boundary", signature="kinks", similarity="boundary-orientation", points=29,
    directions=16, similarity_params={"estimate": "full", "aggregation": "bounded"}, benchmark=False,
    description="tafa-boundary scored by the lines' bounded mean (the highest lower bound over the looks of four "
    "lines, never below the mean), so that the stage also stops once its threshold is surely passed"))
register_scheme(Scheme(
    "tafa-students", probes="random", signature="outputs", similarity="scaled-agreement", points=64,
    probe_params={"invert_steps": 100}, benchmark=False,
    description="the extraction stage: how closely the suspect reproduces the owner's outputs, centred across "
    "them and up to one positive factor, at 64 domain draws moved to inputs the owner is confident on (64 "
    "queries); tafa's stage for distilled students"))
register_scheme(Scheme(
    "tafa-datalike", probes="data-like", signature="derivatives", similarity="derivative-cosine", points=32,
    directions=4, benchmark=False,
    description="the data-like stage: tafa's signature at 32 inputs in the style of real data made from the domain "
    "alone (most features exactly at rest, the others on a 1/16 grid of its range; directions moving only those, "
    "step 1e-4 of its width: 288 queries); tafa's stage for copies served behind a router, even a continuous one, "
    "that answers data-like inputs from the copy"))
register_scheme(Scheme(
    "tafa-outputs", probes="random", signature="outputs", similarity="centred-correlation", points=64,
    benchmark=False,
    description="the outputs stage: how the suspect's outputs move over 64 domain draws as the owner's do (each "
    "output centred over the draws, |cosine|; 64 queries); tafa's stage for owners without confident inputs "
    "(regressors, decoders), whose copies a disturbance of the answers hides from the derivatives"))
register_scheme(Scheme(
    "random-output", probes="random", signature="outputs", similarity="output-cosine", points=100,
    description="random domain inputs, cosine of outputs (the simple baseline)"))


# Ablations of the method (``tafa bench --ablation``): each changes one lever of "tafa".
register_scheme(Scheme(
    "ablate-boundary-projected", probes="boundary", signature="kinks", similarity="boundary-orientation",
    points=36, directions=8, benchmark=False,
    description="the boundary stage as first built (session 4): 36 lines, 8 directions, median of the projected "
    "|cosine| (4,968 queries)"))
register_scheme(Scheme(
    "ablate-random-points", probes="random", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, probe_params={"group": 8, "step": 0.01}, benchmark=False,
    description="tafa without region centring: uniform domain points, fixed step 1% of the domain width"))
register_scheme(Scheme(
    "ablate-inverted-start", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, probe_params={"invert_steps": 100}, benchmark=False,
    description="tafa with candidates first pulled (100 Adam steps) to where the owner is confident: "
    "data-free pseudo-data instead of uniform draws"))
register_scheme(Scheme(
    "ablate-no-groups", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, similarity_params={"weights": {"derivatives": 1.0}}, benchmark=False,
    description="tafa scoring raw derivatives (no centring within direction groups)"))
register_scheme(Scheme(
    "ablate-outputs-only", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, similarity_params={"weights": {"outputs": 1.0}}, benchmark=False,
    description="tafa's probes scored by the output correlation alone"))
register_scheme(Scheme(
    "ablate-32-points", probes="relu", signature="derivatives", similarity="derivative-cosine", points=32,
    directions=4, benchmark=False, description="tafa with 32 probes (288 queries)"))
register_scheme(Scheme(
    "ablate-8-directions", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=8, benchmark=False, description="tafa with 8 directions per probe (1088 queries)"))

register_scheme(Scheme(
    "ablate-select-uniform", probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
    directions=4, probe_params={"select_from": 4}, references=ReferenceSource.DATA_FREE, benchmark=False,
    description="tafa-select without the confident start: groups chosen among uniform region-centred candidates"))
register_scheme(Scheme(
    "ablate-free-select", probes="relu", signature="derivatives", similarity="evidence", points=64, directions=4,
    probe_params={"invert_steps": 100, "select_from": 4}, references=ReferenceSource.DATA_FREE, benchmark=False,
    description="tafa-free (the evidence verifier) at tafa-select's probes"))
register_scheme(Scheme(
    "ablate-meta-verifier", probes="relu", signature="derivatives", similarity="meta-verifier", points=64,
    directions=4, references=ReferenceSource.DATA_FREE, similarity_params={"keys": ("outputs", "derivatives")},
    benchmark=False,
    description="tafa's probes decided by MetaV's MLP verifier over outputs and derivatives, data-free references"))
register_scheme(Scheme(
    "ablate-meta-verifier-data", probes="relu", signature="derivatives", similarity="meta-verifier", points=64,
    directions=4, references=ReferenceSource.DATA, similarity_params={"keys": ("outputs", "derivatives")},
    benchmark=False,
    description="as ablate-meta-verifier, with references the owner makes from its data"))
register_scheme(Scheme(
    "ablate-extract-uniform", probes="relu", signature="outputs", similarity="output-agreement", points=64,
    benchmark=False, description="tafa-extract at uniform region-centred probes (no confident start)"))

# The shortcuts a time budget may take (``ReluProbes.plan``), forced, so that the benchmark
# measures what each costs in detection (docs/method.md, "Cost and the time budget").
for _name, _params, _what in (
        ("ablate-float32", {"analysis_dtype": "float32"}, "the white-box analysis in float32"),
        ("ablate-slice-4", {"slice_dim": 4}, "the analysis and the LP in the 4-dim slice of the directions alone"),
        ("ablate-no-lp", {"centre_limit": 0}, "no region LP: drawn points, nearest-switch radius"),
        ("ablate-budget-cheapest", {"analysis_dtype": "float32", "slice_dim": 4, "centre_limit": 0},
         "the cheapest white-box plan: float32, 4-dim slices, no LP"),
        ("ablate-ladder", {"black_box": True}, "the black-box linearity ladder instead of the white-box analysis")):
    register_scheme(Scheme(_name, probes="relu", signature="derivatives", similarity="derivative-cosine", points=64,
                           directions=4, probe_params=_params, benchmark=False,
                           description=f"tafa with a time-budget shortcut forced: {_what}"))

#: The schemes ``tafa bench --ablation`` compares.
ABLATION = ("tafa", "ablate-random-points", "ablate-inverted-start", "ablate-no-groups", "ablate-outputs-only",
            "ablate-32-points", "ablate-8-directions", "tafa-select", "ablate-select-uniform", "tafa-learned",
            "tafa-free", "ablate-free-select", "ablate-meta-verifier", "ablate-meta-verifier-data", "metav-free",
            "tafa-extract", "ablate-extract-uniform", "tafa-one-stage", "tafa-boundary", "ablate-boundary-projected",
            "ablate-stop-passed")

_OWN_REGISTERED = True
