"""The coarse scale's smoothed outputs: what each part of its score sees behind a disturbance.

For an owner answering a single value or an image (the regressors, the decoder), the coarse scale
that decides rough, rippled or rounded suspects scores the mean of two parts read from the same
answers (docs/method.md, "The coarse scale's smoothed outputs"): the averaged derivatives' cosine
(the score before) and the ``|cosine|`` of the outputs averaged over each probe's 32 jittered steps,
centred over the probes. Per zoo: the owner and three of its copies behind the disturbances of the
evasion and interface families the coarse scale decides, each cell ``derivatives / smoothed /
score (k)`` with ``k`` the zoo's calibration models scoring at or above the score (0: above every
one of them); then the calibration models' highest score and the scored independents behind the
same families above it. Last, per zoo, how many of those copies (and independents) four ways of
deciding with the two parts judge derived at alpha 0.01 (the zoo's 100 calibration models: above
every one of them by rank): the differences alone (the coarse scale before), their mean (the
coarse scale now: one statistic at the whole alpha), max-T over the two parts (each standardised
with the suspect, ``Rule.joint``), and the sum of the two standardised parts.

    python benchmarks/coarse_smoothed.py [--zoos diabetes-mlp friedman-mlp digits-vae]   # about 30 s
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.decide.rule import Rule
from tafa.models import TorchModel

FAMILIES = ("ripple", "ripple_small", "triangle", "noise", "round1", "pixels8")
#: The level of the comparison of ways to decide.
ALPHA = 0.01
WAYS = ("differences alone", "mean (kept)", "max-T", "standardised sum")


def parts(stage: Fingerprint, model) -> tuple[float, float, float]:
    """The averaged derivatives' score, the smoothed outputs' and the coarse scale's (their mean)."""
    score = stage.score(model)
    return score.parts.get("differences", score.value), score.parts.get("smoothed", float("nan")), score.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp", "digits-vae"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0,
                                         second_stage=False)
        stage = fingerprint.coarse_stage(averaged=True)
        assert stage is not None
        table = np.array([parts(stage, TorchModel(model, spec.input_shape))
                          for _, model in zoo.with_role("calibration")])
        references = table[:, 2]
        rows = [row for row in evasion_suspects(zoo) + interface_suspects(zoo)
                if row[2].split("/")[1] in FAMILIES]
        families = [f for f in FAMILIES if any(row[2] == f"{kind}/{f}" for row in rows
                                               for kind in ("evasion", "interface"))]
        print(f"\n{name}: {len(references)} calibration models, highest score {references.max():.3f}")
        print("| copy | " + " | ".join(f"`{family}`" for family in families) + " |")
        print("|:---|" + "---:|" * len(families))
        by_row = {(row[0].split("%")[0].split("@")[0], row[2].split("/")[1]): row for row in rows if row[1] == 1}
        for copy in ("owner", "int8", "ft_all_small", "prune50_ft"):
            cells = []
            for family in families:
                row = by_row.get((copy, family))
                if row is None:
                    cells.append("-")
                    continue
                derivatives, smoothed, value = parts(stage, row[3])
                cells.append(f"{derivatives:.3f} / {smoothed:.3f} / {value:.3f} ({int((references >= value).sum())})")
            print(f"| `{copy}` | " + " | ".join(cells) + " |")
        measured = [(row[1], parts(stage, row[3])) for row in rows]
        independents = [value for label, (_, _, value) in measured if label == 0]
        print(f"scored independents behind these families above every calibration model: "
              f"{sum(v > references.max() for v in independents)} of {len(independents)}")
        counts = {way: [0, 0] for way in WAYS}
        for label, scores in measured:
            for way, fired in zip(WAYS, decisions(table, scores)):
                counts[way][1 - label] += fired
        copies = sum(label for label, _ in measured)
        print(f"judged derived at alpha {ALPHA:g}, copies of {copies} / independents of {len(measured) - copies}: "
              + "; ".join(f"{way} {a} / {b}" for way, (a, b) in counts.items()))


def decisions(table: np.ndarray, scores: tuple[float, float, float]) -> list[bool]:
    """Whether each of :data:`WAYS` judges a suspect with these part scores derived against the
    references' (``table``: differences, smoothed, mean per reference)."""
    differences, smoothed, value = scores
    bound = int(np.floor(ALPHA * (len(table) + 1)))  # references a suspect may be reached by
    both = np.vstack([table[:, :2], [[differences, smoothed]]])
    z = (both - both.mean(axis=0)) / both.std(axis=0, ddof=1)
    total = z.sum(axis=1)
    return [int((table[:, 0] >= differences).sum()) < bound, int((table[:, 2] >= value).sum()) < bound,
            Rule.joint(table[:, :2], ["differences", "smoothed"], ALPHA, [differences, smoothed]).fires(
                [differences, smoothed]),
            int((total[:-1] >= total[-1]).sum()) < bound]


if __name__ == "__main__":
    main()
