"""How many threads torch computes with: one, in one place.

The models tafa queries and the optimisations it runs (probe pulls, verifier fits) are
hundreds of tiny passes; on a busy machine torch's intra-op pool spends far longer
synchronising than computing (a forward pass of a small MLP measured ~100x slower with a
second thread waiting for a core: 0.26 ms -> 24 ms on 2 shared cores), and one thread is as
fast on an idle machine. :func:`one_torch_thread` runs a block on one thread and restores
the count after; :func:`pin_torch_threads` sets it for a whole process (the command line,
worker processes).

>>> import torch
>>> before = torch.get_num_threads()
>>> with one_torch_thread():
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Environment variable the command line reads for its thread count (default 1).
THREADS_ENV = "TAFA_TORCH_THREADS"


def pin_torch_threads(threads: int | None = None) -> None:
    """Set torch's intra-op thread count for this process: ``threads``, else
    ``$TAFA_TORCH_THREADS``, else 1."""
    import torch

    if threads is None:
        try:
            threads = int(os.environ.get(THREADS_ENV, "1"))
        except ValueError:
            threads = 1
    torch.set_num_threads(max(1, threads))


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (the previous count is restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
