"""Architectures named on the command line as ``tests.factories:NAME`` in the CLI tests."""

from tafa.bench.architectures import build


def digits_mlp():
    return build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)


def not_a_module():
    return 42
