"""The boundary geometry on convolutional first layers (issue 22 item 1; docs/method.md, "Lines
within what a filter sees").

Per convolutional zoo of the full benchmark (from its cache): the owner's second stage as the default
makes it (lines along its first layer's units, a filter at one position measured in directions within
the pixels it sees, at the local step), and for filters that see fewer values than its 16 directions
need (the digits CNN's and ResNet's 3x3 over one channel), which the default leaves out, as it would
be with them (``small_filters``: directions widened to neighbouring positions); how many lines were
made from how many candidates; then the
stage's score of every calibration model (its highest and second highest), of every scored copy (with
how many calibration models score at or above it: 0 is above them all), and how many scored
independents score above every calibration model. Beside each copy, white-box and for reading only:
the median cosine of the owner's first-layer filters with the copy's same-index filters (what the
stage measures from outputs; independents' best-matching filters are printed for comparison).

    python benchmarks/conv_geometry.py [--zoos digits-cnn mnist-lenet mnist-resnet]   # 90 s
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dataclasses import replace

from tafa import Fingerprint
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel
from tafa.scheme import get_scheme
from tafa.weights.layers import unit_layers


def first_filters(module: torch.nn.Module) -> np.ndarray:
    """The first weighted layer's filters (or units), BatchNorm folded, one unit vector per row."""
    weights = unit_layers(module, max_layers=1)[0].vectors[:, :-1]
    return weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-cnn", "mnist-lenet", "mnist-resnet"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        owner_model = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner_model, spec.domain, seed=0)
        stage = fingerprint.second
        made = "the default's"
        if stage is None:  # filters too small for the default: the stage as it would be with them
            boundary = get_scheme("tafa-boundary")
            boundary = replace(boundary, probe_params={**boundary.probe_params, "small_filters": True})
            stage = Fingerprint.create(owner_model, spec.domain, scheme=boundary, seed=0, time_budget=None,
                                       second_stage=False)
            made = f"not the default's ({fingerprint.meta['second_stage']['why']}); with small_filters"
        info = stage.probes.info
        references = np.array([stage.score(TorchModel(m, spec.input_shape)).value
                               for _, m in zoo.with_role("calibration")])
        top = np.sort(references)[::-1]
        owner = first_filters(zoo.owner)
        print(f"\n{name}: second stage {made}: {info['lines']} lines ({info['local_lines']} local) from "
              f"{info['candidates_tried']} "
              f"candidates; {len(references)} calibration models: highest {top[0]:.3f}, second {top[1]:.3f}")
        print("| copy | stage score | calibration models at or above | first-layer filter cosine (white-box) |")
        print("|:---|---:|---:|---:|")
        independents, matches = [], []
        for recipe, model in zoo.with_role("scored"):
            value = stage.score(TorchModel(model, spec.input_shape)).value
            filters = first_filters(model)
            same = filters.shape == owner.shape
            if recipe.label == 0:
                independents.append(value)
                if same:
                    matches.append(float(np.median(np.abs(owner @ filters.T).max(axis=1))))
                continue
            cosine = f"{np.median(np.abs(np.sum(owner * filters, axis=1))):.3f}" if same else "-"
            print(f"| `{recipe.name}` | {value:.3f} | {int((references >= value).sum())} | {cosine} |")
        print(f"scored independents above every calibration model: {sum(v > top[0] for v in independents)} of "
              f"{len(independents)} (highest {max(independents):.3f}); their best-matching filters' median cosine "
              f"{min(matches):.3f}-{max(matches):.3f}" if matches else "")


if __name__ == "__main__":
    main()
