"""The evasion check on models that do not evade (issue 21): does any plain network, or any network
behind an interface, make the check's segments jump, or the check call it evasive?

For each zoo of the full benchmark (from its cache): the default fingerprint's first-stage inputs;
every calibration and scored model (owners' copies, independent models, every architecture of the
zoo: MLPs, CNNs with max pooling, LeNet, a ResNet with BatchNorm, decoders) answers them, plain and
behind every interface of its task (:mod:`tafa.attacks.interface`), and
:func:`tafa.signature.consistency.check_evasion` runs on it with seeds 0 and 1. Printed per zoo: the
models checked, how many were judged evasive, how many segments jumped, and the largest last-piece
change, jump or not (fraction of the answers' spread; a jump must exceed ``JUMP_TOLERANCE`` and
persist), and the largest re-ask and pair differences against their tolerances, and which part of the
check called the evasive ones so (re-asks, near pairs, segment jumps; one check can count in several).

    python benchmarks/jump_check.py [--zoos digits-mlp ...] [--cache .tafa-cache/zoo] [--interfaces]
    python benchmarks/jump_check.py --zoos digits-mlp digits-cnn mnist-lenet --only top1   # one interface alone
    python benchmarks/jump_check.py --zoos digits-mlp --only bf16 --then softmax   # a softmax on bfloat16 logits
    python benchmarks/jump_check.py --zoos diabetes-mlp --only bf16 --then clip affine   # clipped, a float32 unit
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tafa import Fingerprint
from tafa.attacks.interface import get_interface, interfaces_for
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.domain import parse_domain
from tafa.models import TorchModel
from tafa.signature.consistency import (JUMP_TOLERANCE, MIN_JUMPS, PAIR_TOLERANCE, REASK_TOLERANCE, check_evasion,
                                        fires)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=[spec.name for spec in FULL])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--interfaces", action="store_true", help="also every interface of the zoo's task")
    parser.add_argument("--only", nargs="+", help="these interfaces alone (no plain models)")
    parser.add_argument("--then", nargs="+", default=[],
                        help="serve each wrapped model through these interfaces too, in order (after the other)")
    args = parser.parse_args()
    after = [get_interface(name) for name in args.then]
    print(f"tolerances: jump {JUMP_TOLERANCE:g}, pair {PAIR_TOLERANCE:g}, re-ask {REASK_TOLERANCE:g}")
    print("| zoo | models x wraps x seeds | evasive | by re-asks / pairs / jumps | segments jumped | "
          "largest last piece | largest pair | largest re-ask | seconds |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in FULL:
        if spec.name not in args.zoos:
            continue
        started = time.perf_counter()
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
        inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
        domain = parse_domain(spec.domain, spec.input_shape)
        modules = [zoo.owner, *[model for role in ("calibration", "scored") for _, model in zoo.with_role(role)]]
        wraps = [None, *interfaces_for(spec.scenario)] if args.interfaces else [None]
        if args.only:
            wraps = [wrap for wrap in interfaces_for(spec.scenario) if wrap.name in args.only]
            if not wraps:
                continue
        checked = evasive = jumped = 0
        parts = {"re-asks": 0, "pairs": 0, "jumps": 0}
        worst = {"jump": 0.0, "pair": 0.0, "reask": 0.0}
        for module in modules:
            plain = TorchModel(module, spec.input_shape)
            for wrap in wraps:
                model = plain if wrap is None else wrap.apply(plain)
                for then in after:
                    model = then.apply(model)
                answers = model(inputs)
                for seed in (0, 1):
                    found = check_evasion(model, inputs, answers, domain, seed=seed)
                    checked += 1
                    evasive += found.evasive
                    if found.evasive:
                        parts["re-asks"] += fires(found.reask_differing, found.reasked)
                        parts["pairs"] += fires(found.pairs_differing, found.pairs)
                        parts["jumps"] += found.jumps >= MIN_JUMPS
                    jumped += found.jumps
                    worst["jump"] = max(worst["jump"], found.pieces_max)
                    worst["pair"] = max(worst["pair"], found.pairs_max)
                    worst["reask"] = max(worst["reask"], found.reask_max)
        print(f"| {spec.name} | {len(modules)} x {len(wraps)} x 2 = {checked} | {evasive} | "
              f"{' / '.join(str(v) for v in parts.values())} | {jumped} | "
              f"{worst['jump']:.2g} | {worst['pair']:.2g} | {worst['reask']:.2g} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
