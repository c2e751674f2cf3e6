"""How often the evasion check (:func:`tafa.signature.consistency.check_evasion`) calls a served model
evasive, per zoo and evasion family, over the benchmark's evasion rows (``benchmarks/jump_check.py``
checks that no plain model ever is).

Every row is asked the default fingerprint's first-stage inputs and then checked with the seed the
benchmark gives it (its row name), so the figures are those of ``tafa bench``'s evasion families; the
check's draws move with the seed: ``--seeds K`` repeats every evasion row's check at ``K`` seeds
(the row's own and ``K - 1`` more) and prints the fraction flagged.

    python benchmarks/evasion_check.py                      # every zoo with evasion rows, 1 min; 10 seeds, 5 min
    python benchmarks/evasion_check.py --zoos diabetes-mlp --seeds 5
    python benchmarks/evasion_check.py --interface bf16   # the copy and the decoy each computed in bfloat16

Reads the zoos from the benchmark's cache (``tafa bench --size full --cache .tafa-cache/zoo`` makes it).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.bench.run import _seed, evasion_suspects
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.models import TorchModel
from tafa.signature.consistency import check_evasion

ZOOS = ["digits-mlp", "digits-cnn", "mnist-lenet", "diabetes-mlp", "friedman-mlp", "digits-vae"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=ZOOS)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--interface", help="serve the copy and the decoy inside each router through this interface "
                                            "(tafa.attacks.interface; e.g. bf16)")
    args = parser.parse_args()
    serve = None if args.interface is None else get_interface(args.interface).apply
    print("| zoo | family | copies flagged | independents flagged |")
    print("|:---|:---|---:|---:|")
    totals: dict[str, list[float]] = defaultdict(list)
    for name in args.zoos:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0,
                                         second_stage=False)
        inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
        flagged: dict[tuple[str, int], list[float]] = defaultdict(list)
        for row, label, family, suspect in evasion_suspects(zoo, serve):
            answers = suspect(inputs)
            seeds = [_seed(row)] + [_seed(f"{row}#{k}") for k in range(1, args.seeds)]
            hits = [check_evasion(suspect, inputs, answers, fingerprint.domain, seed=seed).evasive for seed in seeds]
            flagged[(family.split("/")[1], label)].append(float(np.mean(hits)))
        for family in sorted({family for family, _ in flagged}):
            copies, independents = flagged[(family, 1)], flagged[(family, 0)]
            totals[f"{family} copies"] += copies
            totals[f"{family} independents"] += independents
            print(f"| {name} | {family} | {np.mean(copies):.2f} ({len(copies)}) | {np.mean(independents):.2f} "
                  f"({len(independents)}) |")
    print("\n| rows | flagged |")
    print("|:---|---:|")
    for key, values in sorted(totals.items()):
        print(f"| {key} | {np.mean(values):.3f} ({len(values)}) |")


if __name__ == "__main__":
    main()
