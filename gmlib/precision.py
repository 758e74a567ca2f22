"""The arithmetic of first-order passes: float32, or bfloat16 where the processor computes it natively.

Most of gradient matching's time on a CPU goes to passes that only need first derivatives: the
real batches' gradients (a constant target), the inner-loop training of the network, and the
training and testing of evaluation networks. Under ``'bf16'`` these run in ``torch.autocast``
with bfloat16: convolutions and matrix products take bfloat16 inputs and accumulate in float32,
while the parameters, their gradients, the losses and the optimiser stay float32. The synthetic
images' second-order pass (gradient with its graph, distance, backward) always runs in float32,
because it carries the small differences the images learn from.

``'auto'`` picks ``'bf16'`` on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX), where
benchmarks/bench_speed.py measured it about 1.5x faster per pass with the same accuracy, and
``'fp32'`` elsewhere (on GPUs the speed and accuracy of bfloat16 have not been measured here).
``'fp32'`` is the exact path: the one the reference implementations and the tests compare with.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from gmlib.checks import check_one_of

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 products natively (else bfloat16 is emulated, and slow)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' -> 'bf16' on a CPU with native bfloat16, 'fp32' otherwise; other values checked
    and returned (``'bf16'`` is refused on a CPU without it: it would be slower, not faster)."""
    check_one_of("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise ValueError("precision='bf16' needs a CPU with native bfloat16 arithmetic (AVX-512 BF16 or AMX); "
                         "this one emulates it: use 'fp32' or 'auto'")
    return precision


def first_order(precision: str, device: torch.device | str) -> ContextManager:
    """The context in which a first-order pass (forward and loss; the backward follows its
    forward's types) runs at ``precision`` (already resolved: 'fp32' or 'bf16') on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_one_of("precision", precision, PRECISIONS[1:])
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
