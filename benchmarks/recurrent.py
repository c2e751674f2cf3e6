"""Sequence owners (issue 22: networks outside the zoos): an LSTM reading a digit row by row.

The white-box analysis cannot freeze an LSTM or a GRU (one fused call of gates), so such an owner
is fingerprinted black-box (:func:`tafa.relu.linearise.check_frozen_affine`), with the data-like
and extraction stages and no boundary geometry. A ReLU recurrence (``nn.RNN(nonlinearity="relu")``,
``--kind rnn``) is a ReLU network once unrolled and is analysed white-box like one (run this script
on the code before session 27 for its black-box figures), and so is a 1-D convolution over the rows
with global max pooling over time (``--kind conv``, a text or audio CNN's shape). This trains two
owners (``--owners``) on one half of scikit-learn's digits (8 rows of 8 values), applies the
post-processing a pirate would (fine-tuning on the other half at two learning rates, 50% and 80%
magnitude pruning then fine-tuning, weight noise, int8 and float16 rounding of every weight, distillation into a fresh
network of the owner's kind on its answers), trains independent models (recurrent networks of the
owner's kind and of another, GRUs for an LSTM owner and LSTMs for the others, of other seeds, on
either half; ReLU MLPs on the flattened image), and decides each suspect against 99 independent
references of the same three kinds (:meth:`Fingerprint.calibrate`, each stage at its share of
alpha, the parametric tail where the rank is short, as ``tafa bench``). Prints, per
post-processing, the copies judged derived at alpha 0.05 / 0.01, and the independent models judged
derived.

    python benchmarks/recurrent.py --owners 5               # about 1 minute
    python benchmarks/recurrent.py --owners 5 --kind rnn    # about 2.5 minutes
    python benchmarks/recurrent.py --owners 5 --kind conv   # about 2 minutes
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from tafa import Fingerprint, parse_domain
from tafa.training import Objective, TrainingData, fit


class Rows(nn.Module):
    """A recurrent layer over the 8 rows of a digit, then a linear head on its last state (``conv``:
    the rows as 8 channels over 8 steps, a 1-D convolution, each filter's largest value over time)."""

    def __init__(self, seed: int, kind: str = "lstm", hidden: int = 32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.kind = kind
        if kind == "conv":
            self.rnn: nn.Module = nn.Conv1d(8, hidden, 3)
        elif kind == "rnn":
            self.rnn = nn.RNN(8, hidden, batch_first=True, nonlinearity="relu")
        else:
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return self.head(torch.relu(self.rnn(x)).max(dim=2).values)
        return self.head(self.rnn(x)[0][:, -1])


def flat_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, lr: float, *,
            objective: Objective = "classify", masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """:func:`tafa.training.fit` (Adam), on labels or, ``objective="match"``, on a teacher's outputs;
    ``masks`` keep pruned weights at zero."""
    def keep_pruned() -> None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if masks and name in masks:
                    parameter.mul_(masks[name])

    return fit(model, TrainingData(x, y, objective), epochs=epochs, lr=lr, seed=seed,
               after_step=keep_pruned if masks else None)


def matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.ndim >= 2}


def pruned_tuned(model: nn.Module, fraction: float, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """Every weight matrix (input, recurrent, head) loses its smallest ``fraction`` by magnitude,
    then 3 epochs of fine-tuning at lr 1e-3 keep them at zero."""
    model = copy.deepcopy(model)
    masks = {}
    with torch.no_grad():
        for name, weight in matrices(model).items():
            cut = weight.abs().flatten().kthvalue(max(1, int(fraction * weight.numel()))).values
            masks[name] = (weight.abs() > cut).to(weight.dtype)
            weight.mul_(masks[name])
    return trained(model, x, y, seed, 3, 1e-3, masks=masks)


def answers(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def rounded(model: nn.Module, how: str, seed: int = 0) -> nn.Module:
    """Every parameter rounded to int8 (per tensor, symmetric), to float16, or with 10% noise."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if how == "int8":
                step = parameter.abs().max() / 127
                parameter.copy_(torch.round(parameter / step) * step)
            elif how == "fp16":
                parameter.copy_(parameter.half().float())
            else:
                parameter.add_(0.1 * parameter.std() * torch.randn(parameter.shape, generator=generator))
    return model


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=2)
    parser.add_argument("--references", type=int, default=99)
    parser.add_argument("--independents", type=int, default=10, help="per kind (the owner's, another recurrent, MLP)")
    parser.add_argument("--kind", choices=("lstm", "rnn", "conv"), default="lstm",
                        help="the owners' layer over the rows: an LSTM, a ReLU recurrence (nn.RNN), or a 1-D "
                             "convolution with global max pooling over time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    digits, labels = load_digits(return_X_y=True)
    x = torch.tensor((digits / 16.0).astype(np.float32)).reshape(-1, 8, 8)
    y = torch.tensor(labels)
    order = np.random.default_rng(0).permutation(len(x))
    halves = [torch.as_tensor(order[: len(x) // 2]), torch.as_tensor(order[len(x) // 2:])]
    owner_x, owner_y, pirate_x, pirate_y = x[halves[0]], y[halves[0]], x[halves[1]], y[halves[1]]
    epochs = 10
    kinds = (args.kind, "gru" if args.kind == "lstm" else "lstm", "mlp")

    def independent(seed: int) -> tuple[str, nn.Module]:
        kind = kinds[seed % 3]
        half = halves[(seed // 3) % 2]
        model = flat_mlp(seed) if kind == "mlp" else Rows(seed, kind)
        return kind, trained(model, x[half], y[half], seed, epochs, 1e-2)

    references = [independent(1000 + k)[1] for k in range(args.references)]
    others = [independent(5000 + k) for k in range(3 * args.independents)]
    print(f"trained {len(references)} references and {len(others)} independent models "
          f"({time.time() - started:.0f} s)")
    domain = parse_domain("box:0,1", (8, 8))
    caught: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    utility: dict[str, list[float]] = defaultdict(list)
    flagged: dict[float, list[str]] = {0.05: [], 0.01: []}
    analysis = ""
    for owner_seed in range(args.owners):
        owner = trained(Rows(owner_seed, args.kind), owner_x, owner_y, owner_seed, epochs, 1e-2)
        base = accuracy(owner, pirate_x, pirate_y)
        copies = {
            "ft_small": trained(copy.deepcopy(owner), pirate_x, pirate_y, 11, 3, 1e-3),
            "ft_large": trained(copy.deepcopy(owner), pirate_x, pirate_y, 12, epochs, 1e-2),
            "prune50_ft": pruned_tuned(owner, 0.5, pirate_x, pirate_y, 13),
            "prune80_ft": pruned_tuned(owner, 0.8, pirate_x, pirate_y, 15),
            "noise10": rounded(owner, "noise", owner_seed),
            "int8": rounded(owner, "int8"),
            "fp16": rounded(owner, "fp16"),
            "distill": trained(Rows(7000 + owner_seed, args.kind), pirate_x, answers(owner, pirate_x), 14, epochs, 1e-2,
                               objective="match"),
        }
        fingerprint = Fingerprint.create(owner, domain, input_shape=(8, 8))
        analysis = fingerprint.probes.info["analysis"]
        rules = {alpha: fingerprint.calibrate(references, alpha, parametric=True) for alpha in (0.05, 0.01)}
        for name, model in copies.items():
            utility[name].append(accuracy(model, pirate_x, pirate_y) / base)
            caught[name].append(tuple(fingerprint.verify(model, calibration=rules[a], check_evasion=False).decision
                                      == "derived" for a in (0.05, 0.01)))
        for kind, model in others:
            for alpha in (0.05, 0.01):
                if fingerprint.verify(model, calibration=rules[alpha], check_evasion=False).decision == "derived":
                    flagged[alpha].append(kind)
        stages = ", ".join(fingerprint.stage_names())
        print(f"owner {owner_seed}: accuracy {base:.3f} on the other half; stages {stages} "
              f"({time.time() - started:.0f} s)")
    print(f"analysis: {analysis}\n")
    print("| post-processing | utility kept (median) | copies derived α=0.05 / 0.01 |")
    print("|:---|---:|---:|")
    for name, decisions in caught.items():
        at = [sum(d[k] for d in decisions) for k in (0, 1)]
        print(f"| {name} | {np.median(utility[name]):.2f} | {at[0]} / {at[1]} of {len(decisions)} |")
    total = len(others) * args.owners
    print(f"| independent models ({', '.join(kinds)}) judged derived | | {len(flagged[0.05])} / "
          f"{len(flagged[0.01])} of {total} ({', '.join(flagged[0.05]) or 'none'} / "
          f"{', '.join(flagged[0.01]) or 'none'}) |")
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
