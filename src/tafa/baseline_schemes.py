"""The published baselines, registered as schemes beside the project's method.

:data:`~tafa.scheme.SCHEMES` imports this module on its first read (it is the table's
provider); this module imports :mod:`tafa.scheme`, never the other way round.

Each is one probe strategy, one signature and one similarity, all in their stages'
subpackages; this module only names the combinations and their default sizes (see each
stage's module for the papers' defaults and their sources):

=========== ============= ================= ============== ======= ===================
scheme      probes        signature         similarity     points  queries / suspect
=========== ============= ================= ============== ======= ===================
modeldiff   modeldiff     decision-distance ddv-cosine     300     600 (two per pair)
ipguard     ipguard       labels            match-rate     100     100 (labels only)
sac-m       sac-m         correlation       correlation-l1 100     100
=========== ============= ================= ============== ======= ===================

The three start from the owner's data where it is given (``Fingerprint.create(...,
data=X)``), as their papers do, and from the domain otherwise. IPGuard and SAC-m are for
classifiers only (``tasks``); IPGuard needs a white-box owner.

>>> sorted(name for name in SCHEMES if name in ("modeldiff", "ipguard", "sac-m"))
['ipguard', 'modeldiff', 'sac-m']
"""

from __future__ import annotations

from . import probes as _probes  # noqa: F401  (registers the probe strategies)
from . import signature as _signature  # noqa: F401  (registers the signatures)
from .decide import baseline_similarities as _similarities  # noqa: F401  (registers the similarities)
from .scheme import SCHEMES, ReferenceSource, Scheme, register_scheme

register_scheme(Scheme(
    "modeldiff", probes="modeldiff", signature="decision-distance", similarity="ddv-cosine", points=300,
    description="ModelDiff (ISSTA 2021): input pairs perturbed on the owner, cosine of decision distance vectors"))
register_scheme(Scheme(
    "ipguard", probes="ipguard", signature="labels", similarity="match-rate", points=100,
    tasks=("classification",),
    description="IPGuard (AsiaCCS 2021): points near the owner's classification boundary, label match rate"))
register_scheme(Scheme(
    "sac-m", probes="sac-m", signature="correlation", similarity="correlation-l1", points=100,
    tasks=("classification",),
    description="SAC-m (NeurIPS 2022): CutMix samples, 1 - mean |difference| of output correlation matrices"))

__all__ = ["SCHEMES"]

# MetaV (KDD 2022): inputs learned jointly with an MLP meta-verifier on the owner's reference
# models (positives: the owner and its derived copies; negatives: independent models). The
# probe strategy learns the 64 inputs (64 queries per suspect); Fingerprint.create then fits
# the verifier on the references' outputs there (tafa.probes.learned, tafa.decide.metav).
from .decide import metav as _metav  # noqa: E402,F401  (registers the meta-verifier)

register_scheme(Scheme(
    "metav", probes="metav", signature="outputs", similarity="meta-verifier", points=64,
    references=ReferenceSource.DATA,
    description="MetaV (KDD 2022): inputs learned jointly with an MLP meta-verifier on the owner's positive "
    "and negative reference models, the verifier's probability of being derived"))


# MetaV made data-free (an ablation, benchmark=False): inputs start where the owner is
# confident instead of at its data, and the references are the data-free ones.
register_scheme(Scheme(
    "metav-free", probes="metav", signature="outputs", similarity="meta-verifier", points=64,
    references=ReferenceSource.DATA_FREE,
    probe_params={"start": "inverted"}, benchmark=False,
    description="MetaV with no data: inputs start from inputs the owner is confident on, references data-free"))
