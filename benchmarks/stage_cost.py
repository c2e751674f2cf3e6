"""The nominal cost of the stages searched on the owner's gradients, per network: what decides
whether ``Fingerprint.create`` makes them within the time budget (docs/method.md, "Cost and the
time budget"; counted, not timed: the same figures on every machine).

For each benchmark zoo's owner architecture and each network of ``fingerprint_cost.py``'s table
(random weights): the multiply-accumulates of one forward pass, and the estimates of the data-free
label stage (IPGuard's boundary search) and of the extraction stage (the pull towards confident
inputs), as their probe strategies' cost plans give them; ``-`` where the stage does not apply
(more than 65,536 input values, one output, or no torch module).

    python benchmarks/stage_cost.py        # seconds
"""

from __future__ import annotations

import sys
from pathlib import Path



def main() -> None:
    import torch

    from tafa import TorchModel
    from tafa.bench.architectures import build
    from tafa.bench.scenarios import FULL
    from tafa.domain import parse_domain
    from tafa.fingerprint import DEFAULT_TIME_BUDGET
    from tafa.label_stage import free_label_scheme, free_stage_applies
    from tafa.probes.cost import forward_macs
    from tafa.scheme import get_scheme

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fingerprint_cost import ROWS, _owner

    torch.set_num_threads(1)
    networks = {}
    for spec in FULL:
        if spec.owner_arch not in {name for name, _ in networks.values()}:
            module = build(spec.owner_arch, input_shape=spec.input_shape, output_dim=spec.output_dim, seed=0).eval()
            networks[spec.name] = (spec.owner_arch, (module, spec.input_shape, spec.domain))
    for row in ROWS:
        module, shape = _owner(row)
        networks[f"scaling: {row}"] = (row, (module, shape, "box:0,1"))
    print(f"{'network':28s} {'input':>10s} {'MACs':>10s} {'label stage s':>14s} {'extraction s':>13s}"
          f"   (made within the default {DEFAULT_TIME_BUDGET:g} s budget: *)")
    for name, (_, (module, shape, domain_text)) in networks.items():
        owner = TorchModel(module, shape)
        domain = parse_domain(domain_text, shape)
        cells = []
        for scheme in (free_label_scheme(), get_scheme("tafa-students")):
            if not free_stage_applies(owner):
                cells.append("-")
                continue
            plan = scheme.build()[0].plan(owner, domain, n=scheme.points, k=scheme.directions,
                                          signature_queries=scheme.points * (2 * scheme.directions + 1), budget=None)
            cells.append("-" if plan is None else
                         f"{plan.seconds:,.2f}" + ("*" if plan.seconds <= DEFAULT_TIME_BUDGET else " "))
        print(f"{name:28s} {'x'.join(map(str, shape)):>10s} {forward_macs(module, domain):10.3g} {cells[0]:>14s} "
              f"{cells[1]:>13s}", flush=True)


if __name__ == "__main__":
    main()
