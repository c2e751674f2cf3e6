"""Weight evidence on the benchmark zoos: p-values of every derived copy, independent model
and same-initialisation model against its zoo's owner (docs/method.md, "Weight evidence for
file suspects").

    PYTHONPATH=src python benchmarks/weight_evidence.py --cache /work/main/.tafa-cache/zoo \
        --out benchmarks/weight_evidence.json

``--as-file onnx`` reads every suspect as the ONNX file torch's exporter writes of it
(``tafa.models.onnx_units``, what a sandbox worker reads), ``--as-file onnx-int8`` as that file
after onnxruntime's dynamic int8 quantisation (``ConvInteger`` / ``MatMulInteger``); the owner is
read from its module, as a fingerprint keeps it.

Two p-values per model: the unit-order test's (exact, data-free) and the alignment statistic's
rank among the zoo's other independent models (scored and calibration, leave-one-out for an
independent model), exact when the suspect is exchangeable with them, and Cantelli's bound
1 / (1 + k^2) for a statistic k of their standard deviations above their mean. Reported: TPR
of ``p < 0.01`` on the copies (per recipe and per zoo), FPR on the scored independent models
with exact (Clopper-Pearson) 95% intervals, and the same-initialisation row.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from scipy.stats import beta

from tafa.bench.scenarios import FULL, SIZES
from tafa.bench.zoo import build_zoos
from tafa.weights.evidence import compare
from tafa.weights.layers import MAX_LAYERS, MAX_STORED_VALUES, unit_layers

LEVEL = 0.01


def interval(hits: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a rate."""
    low = 0.0 if hits == 0 else float(beta.ppf(0.025, hits, n - hits + 1))
    high = 1.0 if hits == n else float(beta.ppf(0.975, hits + 1, n - hits))
    return low, high


def file_layers(model, input_shape: tuple[int, ...], form: str, name: str) -> list:
    """``model``'s layers read from the ONNX file of ``form`` made of it (see the module doc)."""
    import io
    import tempfile
    import warnings

    import onnx
    import torch

    from tafa.models.onnx_units import proto_unit_layers

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, *input_shape),), buffer, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    data = buffer.getvalue()
    if form == "onnx-int8":
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder) / "m.onnx", Path(folder) / "q.onnx"
            source.write_bytes(data)
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            data = target.read_bytes()
    return proto_unit_layers(onnx.load_from_string(data), source=name, max_layers=MAX_LAYERS,
                             max_values=MAX_STORED_VALUES)


def measure(size: str, cache: Path, zoos: list[str] | None, form: str = "module") -> list[dict]:
    rows = []
    specs = [spec for spec in SIZES[size] if zoos is None or spec.name in zoos]
    for spec in specs:
        started = time.perf_counter()
        zoo = build_zoos([spec], cache, jobs=1, progress=False, roles=["scored", "calibration", "shared-init"])[0]
        owner = unit_layers(zoo.owner, source="the owner")
        found = {}
        for name, recipe in zoo.recipes.items():
            if recipe.role != "owner":
                model = zoo.models[name]
                read = (unit_layers(model, source=name) if form == "module"
                        else file_layers(model, spec.input_shape, form, name))
                found[name] = compare(owner, read)
        independent = {n: found[n].statistic for n, r in zoo.recipes.items()
                       if r.role in ("scored", "calibration") and r.label == 0 and found[n].applicable}
        for name, recipe in zoo.recipes.items():
            if recipe.role in ("owner", "calibration"):
                continue
            # references: every other independent model of the zoo (leave-one-out for the independents)
            evidence = found[name].with_references([v for n, v in independent.items() if n != name])
            kind = "shared-init" if recipe.role == "shared-init" else "copy" if recipe.label else "independent"
            rows.append({"zoo": spec.name, "scenario": spec.scenario, "model": name, "kind": kind,
                         "family": recipe.family, "recipe": recipe.attack or recipe.family,
                         **evidence.to_dict()})
        print(f"{spec.name}: {time.perf_counter() - started:.1f} s", flush=True)
    return rows


def summarise(rows: list[dict]) -> str:
    lines = []
    for key, label in (("p_value", "unit order (exact, data-free)"),
                       ("reference_p_value", "alignment, rank among the zoo's other independent models"),
                       ("reference_moment_p",
                        "alignment, Cantelli's bound from the other independent models' mean and spread"),
                       ("combined_p_value", "both tests (Bonferroni: 2 x the smaller p)")):
        lines.append(f"\n### p < {LEVEL} by {label}\n")
        lines.append("| zoo | copies detected | independents flagged (FPR, 95% CI) | not applicable (copies / indep.) "
                     "| same-init flagged |")
        lines.append("|---|---|---|---|---|")
        for zoo in dict.fromkeys(r["zoo"] for r in rows):
            mine = [r for r in rows if r["zoo"] == zoo]
            cells = []
            for kind in ("copy", "independent", "shared-init"):
                group = [r for r in mine if r["kind"] == kind and r["applicable"]]
                hits = sum(1 for r in group if r[key] is not None and r[key] < LEVEL)
                cells.append((hits, len(group)))
            (tp, npos), (fp, nneg), (si, nsi) = cells
            low, high = interval(fp, nneg) if nneg else (0.0, 1.0)
            na = (sum(1 for r in mine if r["kind"] == "copy" and not r["applicable"]),
                  sum(1 for r in mine if r["kind"] == "independent" and not r["applicable"]))
            lines.append(f"| {zoo} | {tp}/{npos} | {fp}/{nneg} ({low:.3f}-{high:.3f}) | {na[0]} / {na[1]} "
                         f"| {si}/{nsi} |")
        negatives = [r for r in rows if r["kind"] == "independent" and r["applicable"]]
        fp = sum(1 for r in negatives if r[key] is not None and r[key] < LEVEL)
        low, high = interval(fp, len(negatives))
        lines.append(f"\nAll zoos: FPR {fp}/{len(negatives)} (95% CI {low:.4f}-{high:.4f}); smallest independent "
                     f"p {min((r[key] for r in negatives if r[key] is not None), default=float('nan')):.3g}")
        lines.append("\nPer recipe (copies detected over zoos where applicable):\n")
        recipes: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            if r["kind"] == "copy" and r["applicable"]:
                recipes[r["recipe"]].append(r[key] is not None and r[key] < LEVEL)
        lines.append(", ".join(f"{name} {sum(v)}/{len(v)}" for name, v in recipes.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--size", default="full", choices=sorted(SIZES))
    parser.add_argument("--zoos", nargs="*", help=f"default: all of {[s.name for s in FULL]}")
    parser.add_argument("--out", type=Path, help="write every row as JSON here")
    parser.add_argument("--as-file", default="module", choices=["module", "onnx", "onnx-int8"],
                        help="read each suspect from its module (default) or from an ONNX file made of it")
    args = parser.parse_args()
    rows = measure(args.size, args.cache, args.zoos, args.as_file)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(summarise(rows))


if __name__ == "__main__":
    main()
