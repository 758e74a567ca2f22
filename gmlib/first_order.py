"""How first-order passes run: their arithmetic (float32 or bfloat16) and whether they are compiled.

Most of gradient matching's time on a CPU goes to passes that need only first derivatives: the
real batches' gradients (a constant target), the inner-loop training of the network, and the
training and testing of evaluation networks. :class:`FirstOrder` says how those run, and every
such pass in gmlib goes through its :meth:`FirstOrder.logits`:

* ``precision``: ``'bf16'`` runs them in ``torch.autocast`` with bfloat16, so convolutions and
  matrix products take bfloat16 inputs and accumulate in float32, while the parameters, their
  gradients, the losses and the optimiser stay float32. ``'fp32'`` is the exact path, the one
  the reference implementations and the tests compare with.
* ``compile``: the network's forward (and so its backward) goes through ``torch.compile``, once
  per architecture, input shape and mode, with the weights as inputs: the fresh network of every
  iteration or evaluation model reuses the compiled code. Compiling takes tens of seconds (once
  per process), fuses the normalisation, activation and pooling passes, and changes only the
  rounding. On a CPU the compiled passes also compute the layer that reads one-channel images
  as one matrix product (:class:`PatchProductConv2d`): one model's training steps at 1 image per
  class on MNIST take 16.6 s instead of 20.4 s (benchmarks/bench_eval_breakdown.py).

The synthetic images' second-order pass (gradient with its graph, distance, backward) never goes
through here: it stays float32 and eager (``torch.compile`` cannot compile a double backward), as it
carries the small differences the images learn from.

``'auto'`` (the default everywhere) picks what benchmarks/bench_speed.py measured fastest at
equal accuracy: bfloat16 on CPUs that compute it natively (AVX-512 BF16 or AMX), float32
elsewhere (on GPUs bfloat16 has not been measured here); and compiling on a CPU with a C++
compiler when the job is large enough for the compilation to pay for itself
(:data:`COMPILE_PAYS_OFF_IMAGES`), for networks without BatchNorm or dropout, whose state and
random draws a compiled graph would handle differently.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from dataclasses import dataclass
from itertools import chain
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_one_of
from gmlib.networks import has_batchnorm

PRECISIONS = ("auto", "fp32", "bf16")
# 'auto' compiles a job that passes at least this many images through the network. Compiling DC's
# ConvNet costs about 20-30 s per graph on a 2-core CPU and saves about 1 ms per image (forward and
# backward), so it pays for itself after some 30,000 images; the margin covers a few graphs
# (training, testing, a last smaller chunk).
COMPILE_PAYS_OFF_IMAGES = 200_000


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 products natively (else bfloat16 is emulated, and slow)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def has_cpp_compiler() -> bool:
    """Whether torch.compile's CPU backend finds a C++ compiler."""
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


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


def check_compile(compile: Any) -> None:
    if not (isinstance(compile, bool) or compile == "auto"):
        raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")


def compile_obstacle(net: nn.Module) -> str | None:
    """Why ``net``'s passes are not compiled, or None: BatchNorm updates running statistics in
    its forward, and dropout would draw from the compiled graph's generator, not the seeded one."""
    if has_batchnorm(net):
        return "it has BatchNorm"
    if any(isinstance(module, nn.modules.dropout._DropoutNd) for module in net.modules()):
        return "it has dropout"
    return None


def resolve_compile(compile: Any, device: torch.device | str, net: nn.Module, images: int) -> bool:
    """Whether to compile passes of ``net`` on ``device`` for a job of ``images`` images: 'auto' as
    the module docstring says; True is refused where it cannot work."""
    check_compile(compile)
    device = torch.device(device)
    if compile == "auto":
        return (device.type == "cpu" and has_cpp_compiler() and compile_obstacle(net) is None
                and images >= COMPILE_PAYS_OFF_IMAGES)
    if compile and compile_obstacle(net) is not None:
        raise ValueError(f"compile=True cannot compile {type(net).__name__} because {compile_obstacle(net)}; "
                         "use compile='auto' or False")
    if compile and device.type == "cpu" and not has_cpp_compiler():
        raise ValueError("compile=True needs a C++ compiler on a CPU (torch.compile's backend), and none was "
                         "found: install g++ or use compile='auto' or False")
    return bool(compile)


# One compiled function per architecture (its printed structure) and device: dynamo then adds a
# graph per input shape, grad mode and autocast state, and never one per network.
_COMPILED: dict[tuple[str, str], Callable[[dict[str, Tensor], Tensor], Tensor]] = {}


def compiled_call(net: nn.Module, images: Tensor, method: str = "forward") -> Tensor:
    """``net(images)`` (or ``net.<method>(images)``) through the compiled function of its
    architecture, with ``net``'s weights and buffers as inputs."""
    key = (f"{method}:{net!r}", str(images.device))
    if key not in _COMPILED:
        template = copy.deepcopy(net).to("meta")  # structure only
        if images.device.type == "cpu":
            _image_convs_as_products(template)
        template = _AsForward(template, method)

        @torch.compile(dynamic=False)
        def run(tensors: dict[str, Tensor], x: Tensor) -> Tensor:
            return torch.func.functional_call(template, tensors, (x,))

        _COMPILED[key] = run
    tensors = {f"net.{name}": t for name, t in chain(net.named_parameters(), net.named_buffers())}
    return _COMPILED[key](tensors, images)


class PatchProductConv2d(nn.Conv2d):
    """A convolution computed as one matrix product of its weights with the unfolded input patches.

    The same function and parameters as ``nn.Conv2d``; used in compiled CPU passes for the layer
    that reads one-channel images (MNIST, Fashion-MNIST). There oneDNN's kernels are slow, its
    backward above all: a patch of one channel is too short for their vector loops (at 1 image per
    class on MNIST the layer took 3.7 ms of a 17 ms training step for 1% of its FLOPs; see
    benchmarks/bench_eval_breakdown.py), while the product's other side has all the pixels. With
    three channels (CIFAR) the convolution was faster in a trial, so those layers stay convolutions.
    """

    def forward(self, images: Tensor) -> Tensor:
        n, _, height, width = images.shape
        patches = F.unfold(images, self.kernel_size, self.dilation, self.padding, self.stride)  # (n, patch, pixels)
        out = self.weight.flatten(1) @ patches  # (n, out_channels, pixels)
        if self.bias is not None:
            out = out + self.bias[:, None]
        sides = [(side + 2 * pad - dil * (k - 1) - 1) // step + 1 for side, pad, dil, k, step in
                 zip((height, width), self.padding, self.dilation, self.kernel_size, self.stride)]
        return out.view(n, self.out_channels, *sides)


def _image_convs_as_products(net: nn.Module) -> nn.Module:
    """``net`` with each plain convolution of one input channel turned, in place, into a
    :class:`PatchProductConv2d`."""
    for child in net.modules():
        if (type(child) is nn.Conv2d and child.groups == 1 and child.padding_mode == "zeros"
                and isinstance(child.padding, tuple) and child.in_channels == 1):
            child.__class__ = PatchProductConv2d  # the same parameters and settings
    return net


class _AsForward(nn.Module):
    """``net.<method>`` as a module's forward, so that ``functional_call`` can run it with other weights."""

    def __init__(self, net: nn.Module, method: str) -> None:
        super().__init__()
        self.net, self.method = net, method

    def forward(self, images: Tensor) -> Tensor:
        return getattr(self.net, self.method)(images)


@dataclass(frozen=True)
class FirstOrder:
    """How a first-order pass runs: ``precision`` ('fp32' or 'bf16', resolved) and ``compile``
    (a bool, resolved). The default is the exact path: float32, eager."""

    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        check_one_of("precision", self.precision, PRECISIONS[1:])
        check_compile(self.compile)

    def context(self, device: torch.device | str) -> ContextManager:
        """The autocast context of this precision on ``device`` (none for float32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def logits(self, net: nn.Module, images: Tensor, method: str = "forward") -> Tensor:
        """``net(images)`` (or ``net.<method>``) run this way, returned in float32; backpropagate
        through it as usual."""
        with self.context(images.device):
            if self.compile and compile_obstacle(net) is None:
                out = compiled_call(net, images, method)
            else:
                out = net(images) if method == "forward" else getattr(net, method)(images)
        return out.float()  # losses in float32 (a no-op on the exact path)

    def describe(self) -> str:
        return self.precision + (", compiled" if self.compile else "")


EXACT = FirstOrder()


def first_order_for(precision: str, compile: Any, device: torch.device | str, net: nn.Module,
                    images: int) -> FirstOrder:
    """The passes 'auto' (or explicit) values resolve to, for ``net`` on ``device`` and a job of
    ``images`` images through the network."""
    return FirstOrder(resolve_precision(precision, device), resolve_compile(compile, device, net, images))
