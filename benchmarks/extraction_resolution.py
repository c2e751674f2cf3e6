"""Confident inputs made at a coarser resolution for the extraction stage (issue 22 item 3; measured,
not built: docs/method.md, "The extraction stage").

The extraction stage moves 64 domain draws by Adam towards inputs the owner is confident on
(:func:`tafa.probes.relu.invert`: 100 steps, each pixel free). Here the same pull acts on an image
``FACTOR`` times coarser, upsampled bilinearly to the input's size (so the inputs are smooth at that
scale), optionally with DeepInversion's prior that the owner's BatchNorm layers see their running
statistics (``--batchnorm W``: its weight). Per zoo and factor: the highest stage score
(:class:`~tafa.decide.similarity.ScaledAgreement`) of the 40 calibration models, how often they agree
with the owner's label there, the students' scores, and how many scored independent models lie above
that highest one. Reads the zoos from the benchmark's cache (their students as the current recipe
makes them).

    python benchmarks/extraction_resolution.py                      # LeNet, ResNet, digits CNN and MLP, 2 min
    python benchmarks/extraction_resolution.py --zoos mnist-resnet --factors 1 2 4 --batchnorm 0.01
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tafa.bench.scenarios import cached_zoo
from tafa.decide.similarity import ScaledAgreement
from tafa.domain import parse_domain
from tafa.models import TorchModel

POINTS, STEPS = 64, 100


def confident(module: torch.nn.Module, start: np.ndarray, low: float, high: float, lr: float, factor: int,
              batchnorm: float, seed: int) -> np.ndarray:
    """``start`` moved towards inputs ``module`` maps confidently to a random class each, the image
    ``factor`` times coarser (bilinear upsampling), with the BatchNorm prior at weight ``batchnorm``.
    At factor 1 without the prior it is :func:`tafa.probes.relu.invert`'s pull (the same loss, steps
    and step size) but for where the domain's clip acts (here in the forward pass, there after each
    step), so its inputs are close to the stage's, not equal."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(start, dtype=torch.float32)
    coarse = factor > 1 and x0.ndim == 4
    z = (F.avg_pool2d(x0, factor) if coarse else x0).clone().requires_grad_(True)

    def image(z: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(z, size=x0.shape[2:], mode="bilinear", align_corners=False) if coarse else z
        return torch.clamp(up, low, high)

    with torch.no_grad():
        width = module(x0[:1]).reshape(1, -1).shape[1]
    target = torch.randint(0, width, (len(x0),), generator=generator)
    penalties: list[torch.Tensor] = []

    def prior(layer: torch.nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        seen = inputs[0]
        mean, var = seen.mean(dim=(0, 2, 3)), seen.var(dim=(0, 2, 3), unbiased=False)
        penalties.append(((mean - layer.running_mean) ** 2).sum() + ((var - layer.running_var) ** 2).sum())

    hooks = [m.register_forward_hook(prior) for m in module.modules()
             if batchnorm > 0 and isinstance(m, torch.nn.BatchNorm2d)]
    optimiser = torch.optim.Adam([z], lr=lr)
    try:
        for _ in range(STEPS):
            penalties.clear()
            loss = F.cross_entropy(module(image(z)).reshape(len(x0), -1), target)
            if penalties:
                loss = loss + batchnorm * torch.stack(penalties).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        return image(z).numpy()


def confident_inputs(owner: torch.nn.Module, spec: Any, factor: int, batchnorm: float = 0.0) -> np.ndarray:
    """The 64 inputs of :func:`confident` for a zoo's owner (``spec``: its :class:`ZooSpec`), from
    the same domain draws every script here starts from."""
    shape = spec.input_shape
    domain = parse_domain(spec.domain, shape)
    lo, hi = domain.bounds()
    start = domain.sample(POINTS, np.random.default_rng(1)).astype(np.float32).reshape(POINTS, *shape)
    return confident(owner, start, float(lo.min()), float(hi.max()), 0.05 * domain.scale(), factor, batchnorm, seed=7)


def answers(model: torch.nn.Module, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """``model``'s answers at ``x``, one row per input."""
    return TorchModel(model, shape)(x.astype(np.float32)).reshape(len(x), -1)


def score(similarity: ScaledAgreement, owner: np.ndarray, suspect: np.ndarray) -> float:
    """The extraction stage's score of answers ``suspect`` against the owner's."""
    return similarity.compare({"outputs": owner}, {"outputs": suspect}).value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["mnist-lenet", "mnist-resnet", "digits-cnn", "digits-mlp"])
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batchnorm", type=float, default=0.0)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    similarity = ScaledAgreement()
    print("| zoo | factor | calibration models' highest (their label agreement) | students | independents above it |")
    print("|:---|---:|---:|:---|---:|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        owner = zoo.owner.eval()
        calibration = [model.eval() for _, model in zoo.with_role("calibration")]
        scored = [(recipe, model.eval()) for recipe, model in zoo.with_role("scored")
                  if recipe.family == "extraction" or recipe.label == 0]
        for factor in args.factors:
            if factor > 1 and len(shape) != 3:
                continue
            x = confident_inputs(owner, spec, factor, args.batchnorm)

            mine = answers(owner, shape, x)
            top = max(score(similarity, mine, answers(model, shape, x)) for model in calibration)
            agree = np.mean([np.mean(answers(model, shape, x).argmax(1) == mine.argmax(1)) for model in calibration])
            students = ", ".join(f"`{r.name}` {score(similarity, mine, answers(m, shape, x)):.3f}"
                                 for r, m in scored if r.family == "extraction")
            independents = [score(similarity, mine, answers(m, shape, x)) for r, m in scored if r.label == 0]
            above = sum(value > top for value in independents)
            print(f"| {name} | {factor} | {top:.3f} ({agree:.2f}) | {students} | {above}/{len(independents)} |",
                  flush=True)


if __name__ == "__main__":
    main()
