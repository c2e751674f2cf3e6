"""The evidence verifier (tafa-learned, tafa-free) and the references an owner makes with
no data. Real small models; the models a verifier is fitted on are never the ones scored."""

from __future__ import annotations

import numpy as np
import pytest

from tafa import Fingerprint, TorchModel
from tafa.attacks.references import data_free_references
from tafa.decide.learned import EvidenceVerifier
from tafa.decide.similarity import DerivativeCosine
from tafa.domain import parse_domain


@pytest.fixture(scope="module")
def split(classifier, held_out):
    return held_out(classifier, 9)


def test_fitted_on_some_models_it_ranks_held_out_ones_and_reloads_identically(classifier, split, tmp_path):
    train, test_positives, test_negatives = split
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     scheme="tafa-learned", seed=0, references=train)
    assert isinstance(fingerprint.similarity(), EvidenceVerifier) and fingerprint.similarity().fitted

    def scores(fp: Fingerprint, models: list) -> list[float]:
        return [fp.compare(fp.measure(TorchModel(m, classifier.input_shape))).value for m in models]

    copies, independent = scores(fingerprint, test_positives), scores(fingerprint, test_negatives)
    assert min(copies) > max(independent), (copies, independent)
    # a probability, not only a ranking (a harsher pruning than the training copies scores lower)
    assert np.median(copies) > 0.5 > max(independent), (copies, independent)
    loaded = Fingerprint.load(fingerprint.save(tmp_path / "learned.tafa"))
    assert scores(loaded, [*test_positives, *test_negatives]) == copies + independent


def test_data_free_references_copy_the_owner_or_only_its_answers(regressor):
    domain = parse_domain(regressor.domain, regressor.input_shape)
    refs = data_free_references(regressor.owner, domain, seed=0, n_synthetic=500, lookalikes=2, epochs=5,
                                positives=("int8", "noise5", "prune50_ft", "no-such-attack"))
    assert refs.positive_names == ["data-free int8", "data-free noise5", "data-free prune50_ft"]
    assert refs.negative_names == ["look-alike 0", "look-alike 1"]
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape, seed=0)
    signatures = {name: fingerprint.measure(TorchModel(m, regressor.input_shape))
                  for name, m in zip(refs.positive_names + refs.negative_names, refs.positives + refs.negatives)}
    parts = {name: DerivativeCosine().compare(fingerprint.owner_signature, s).parts for name, s in signatures.items()}
    # look-alikes answer like the owner on the domain (distilled on its outputs) ...
    assert all(parts[f"look-alike {i}"]["outputs"] > 0.8 for i in range(2)), parts
    # ... but have other internals: every copy's local similarity is above every look-alike's
    assert min(parts[n]["local"] for n in refs.positive_names) > max(parts[f"look-alike {i}"]["local"]
                                                                      for i in range(2)), parts
