"""Tiny runs of every method on the run scaffold, for the resume tests (also run as a script, so
a test can stop a real process with a signal).

    python tests/run_methods.py METHOD OUT_DIR ITERATIONS

runs METHOD ('dc', 'dsa', 'dm', 'mtt', 'unroll', 'implicit', 'gtn') into OUT_DIR with a checkpoint after every
iteration and a short sleep in each (so a test can signal it mid-run); exit 143 on SIGTERM."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from fakes import STRATEGY, TINY_NET, fake_dataset, tiny_buffer, tiny_dc_config  # noqa: E402

from gmlib.methods.bilevel import ImplicitConfig, ImplicitMethod, UnrollConfig, UnrollMethod  # noqa: E402
from gmlib.methods.dc import DCMethod  # noqa: E402
from gmlib.methods.dm import DMConfig, DMMethod  # noqa: E402
from gmlib.methods.gtn import GTNConfig, GTNMethod  # noqa: E402
from gmlib.methods.mtt import MTTConfig, MTTMethod  # noqa: E402
from gmlib.run.loop import Method, run  # noqa: E402
from gmlib.run.stopping import Terminated  # noqa: E402

METHOD_NAMES = ("dc", "dsa", "dm", "mtt", "unroll", "implicit", "gtn")


def tiny_method(name: str, iterations: int, seed: int = 0) -> Method:
    """A fresh, tiny ``name`` run of ``iterations`` iterations on the CPU (a fraction of a second each)."""
    data, cpu = fake_dataset(), torch.device("cpu")
    if name in ("dc", "dsa"):
        config = tiny_dc_config(iterations=iterations, method=name, dsa_strategy=STRATEGY if name == "dsa" else None)
        return DCMethod(data, config, seed, cpu)
    if name == "dm":
        return DMMethod(data, DMConfig(ipc=2, iterations=iterations, batch_real=8, dsa_strategy=STRATEGY,
                                       network_kwargs=TINY_NET), seed, cpu)
    if name == "mtt":  # the experts: a tiny buffer built once (tests/fakes.py)
        return MTTMethod(data, MTTConfig(ipc=2, iterations=iterations, syn_steps=3, expert_epochs=2, max_start_epoch=2,
                                         lr_img=10.0, dsa_strategy=STRATEGY, network_kwargs=TINY_NET), seed, cpu,
                         tiny_buffer())
    if name == "unroll":
        return UnrollMethod(data, UnrollConfig(ipc=1, iterations=iterations, inner_steps=2, batch_real=16,
                                               network_kwargs=TINY_NET), seed, cpu)
    if name == "implicit":
        return ImplicitMethod(data, ImplicitConfig(ipc=1, iterations=iterations, inner_steps=2, batch_real=16,
                                                   network_kwargs=TINY_NET), seed, cpu)
    if name == "gtn":
        return GTNMethod(data, GTNConfig(k=16, latent_dim=8, ipc=2, iterations=iterations, outer_loop=2, inner_steps=2,
                                         batch_real=8, batch_train=4, network_kwargs=TINY_NET), seed, cpu)
    raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHOD_NAMES)}")


def main(name: str, out_dir: str, iterations: int) -> int:
    # A process started in the background by a non-interactive shell inherits SIGINT ignored;
    # the test sends SIGINT as Ctrl-C in a terminal would, so restore Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(1)
    method = tiny_method(name, iterations)
    iteration = method.iteration

    def slow_iteration(it, generator):  # room for the test to send its signal mid-run
        time.sleep(0.05)
        return iteration(it, generator)

    method.iteration = slow_iteration
    try:
        run(method, out_dir=out_dir, progress=False, checkpoint_seconds=1e-9)
    except Terminated:
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
