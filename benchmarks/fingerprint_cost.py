"""Owner-side cost of each scheme, everything included: for the schemes that make data-free
references (`tafa-free`, `tafa-select`), the references' training is counted, which
`tafa bench` leaves out (its zoo builds them once for every scheme).

Prints, per benchmark owner, the seconds `Fingerprint.create` takes for each scheme (one
torch thread, owners from the zoo cache of a `tafa bench --size full` run).

    python benchmarks/fingerprint_cost.py [--schemes tafa tafa-free tafa-select] [--zoos digits-mlp ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from tafa import Fingerprint
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemes", nargs="+", default=["tafa", "tafa-free", "tafa-select"])
    parser.add_argument("--zoos", nargs="+", default=[spec.name for spec in FULL])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = [spec for spec in FULL if spec.name in args.zoos]
    print(f"{'owner':14s} {'parameters':>10s} " + " ".join(f"{s:>12s}" for s in args.schemes) + "   (seconds)")
    for zoo in build_zoos(specs, args.cache, progress=False):
        seconds = []
        for scheme in args.schemes:
            started = time.perf_counter()
            Fingerprint.create(zoo.owner, zoo.spec.domain, input_shape=zoo.spec.input_shape, scheme=scheme, seed=0)
            seconds.append(time.perf_counter() - started)
        parameters = sum(p.numel() for p in zoo.owner.parameters())
        print(f"{zoo.spec.name:14s} {parameters:10,d} " + " ".join(f"{s:12.1f}" for s in seconds), flush=True)


if __name__ == "__main__":
    main()
