"""The generator of a generative teaching network (seed 003), and the teacher that feeds it.

Two input modes (seed 003, "GTN-lrn" and "GTN-rnd"):

* ``'learned_input'``: one learnable latent vector per synthetic image, in a fixed class order;
  the generator then produces a fixed set of ``ipc`` images per class (with the identity as the
  generator this is ordinary dataset distillation);
* ``'random_input'``: fresh Gaussian noise every step; the generator can produce any number of
  images, and the final set is one seeded sample.

The generator (seed 003, Fig. 6 and section VII): the input is the latent (d = 64) concatenated
with the one-hot label; Linear(d + classes -> k) -> Linear(k -> floor(k/2) * H * W) reshaped to
floor(k/2) channels of H x W -> Conv3x3(floor(k/2) -> floor(k/4)) -> Conv3x3(floor(k/4) -> C).
Figure 6 itself is an image the text does not describe further, so these choices are ours:

* BatchNorm after the first linear layer and on the reshaped output of the second one (not after
  the convolutions): with it our parameter counts equal the paper's Tables I-III to the printed
  digits (1.640 M for GTN-rnd at k = 64, 449.7 K at k = 32 with 500 latents, 172.2 K at k = 16
  with 1000, 6.533 M at k = 128) -- BatchNorm after every layer would give 1.641 M. The batch
  statistics are always those of the generated batch (no running averages), so the generator
  behaves the same in training and when it produces the final set.
* LeakyReLU(0.2) between layers (our choice; the text does not name the activation).
* No output non-linearity: the networks see *normalised* images, whose range is not symmetric
  (MNIST: -0.42 .. 2.8), and free pixels are unbounded too.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmlib.checks import check_int, check_one_of, is_int
from gmlib.randomness import seeded
from gmlib.synthetic import class_ordered_labels

MODES = ("learned_input", "random_input")
LEAKY_SLOPE = 0.2
MIN_K = 4  # floor(k/4) >= 1 channel in the first convolution


class Generator(nn.Module):
    """Seed 003's class-conditional generator; ``k`` sets its size (see the module docstring).

    ``forward(latents, labels)`` maps ``(n, latent_dim)`` latents and ``(n,)`` int labels to
    ``(n, channels, H, W)`` images in the dataset's normalised space. ``seed`` initialises the
    parameters without touching the global RNG (None: PyTorch's default initialisation).
    With ``batch_norm`` a batch needs at least two images (batch statistics).
    """

    def __init__(self, latent_dim: int, num_classes: int, channels: int, im_size: int | Sequence[int], k: int,
                 *, batch_norm: bool = True, seed: int | None = None) -> None:
        super().__init__()
        check_int("latent_dim", latent_dim, 1)
        check_int("num_classes", num_classes, 1)
        check_int("channels", channels, 1)
        check_int("k (generator size)", k, MIN_K)
        height, width = (im_size, im_size) if is_int(im_size) else tuple(im_size)
        check_int("image height", height, 1)
        check_int("image width", width, 1)
        self.latent_dim, self.num_classes, self.channels, self.k = latent_dim, num_classes, channels, k
        self.im_size = (height, width)
        hidden = k // 2
        with seeded(seed):
            self.fc1 = nn.Linear(latent_dim + num_classes, k)
            self.bn1 = nn.BatchNorm1d(k, track_running_stats=False) if batch_norm else nn.Identity()
            self.fc2 = nn.Linear(k, hidden * height * width)
            self.bn2 = nn.BatchNorm2d(hidden, track_running_stats=False) if batch_norm else nn.Identity()
            self.conv1 = nn.Conv2d(hidden, k // 4, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(k // 4, channels, kernel_size=3, padding=1)

    def forward(self, latents: Tensor, labels: Tensor) -> Tensor:
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim or labels.shape != latents.shape[:1]:
            raise ValueError(f"expected latents (n, {self.latent_dim}) and labels (n,), got "
                             f"{tuple(latents.shape)} and {tuple(labels.shape)}")
        one_hot = F.one_hot(labels, self.num_classes).to(latents.dtype)
        h = F.leaky_relu(self.bn1(self.fc1(torch.cat([latents, one_hot], dim=1))), LEAKY_SLOPE)
        h = self.fc2(h).view(len(latents), self.k // 2, *self.im_size)
        h = F.leaky_relu(self.bn2(h), LEAKY_SLOPE)
        h = F.leaky_relu(self.conv1(h), LEAKY_SLOPE)
        return self.conv2(h)


def generator_parameter_count(latent_dim: int, num_classes: int, channels: int, im_size: int | Sequence[int],
                              k: int, *, batch_norm: bool = True) -> int:
    """The number of parameters of :class:`Generator`, by formula (weights + biases per layer)."""
    height, width = (im_size, im_size) if is_int(im_size) else tuple(im_size)
    hidden, narrow, pixels = k // 2, k // 4, height * width
    count = (latent_dim + num_classes + 1) * k             # fc1
    count += (k + 1) * hidden * pixels                     # fc2
    count += (hidden * 9 + 1) * narrow                     # conv1, 3x3
    count += (narrow * 9 + 1) * channels                   # conv2, 3x3
    if batch_norm:
        count += 2 * (k + hidden)                          # scale and shift of bn1, bn2
    return count


class GenerativeTeacher(nn.Module):
    """A generator and, in ``'learned_input'`` mode, its learnable latents: the teacher lambda.

    :meth:`images` returns the class-ordered set (``ipc`` images of class 0, then of class 1, ...)
    that a student trains on. Learned input: always the same images (one latent each, a
    Parameter). Random input: fresh N(0, I) latents drawn from ``noise_generator`` (a seeded
    ``torch.Generator``, on the CPU so the draw is the same on every device).
    """

    def __init__(self, generator: Generator, mode: str, ipc: int, *, seed: int = 0) -> None:
        super().__init__()
        check_one_of("mode", mode, MODES)
        check_int("ipc (images per class)", ipc, 1)
        self.generator, self.mode, self.ipc = generator, mode, ipc
        self.register_buffer("labels", class_ordered_labels(generator.num_classes, ipc), persistent=False)
        if mode == "learned_input":
            draw = torch.Generator().manual_seed(seed)
            self.latents = nn.Parameter(torch.randn(len(self.labels), generator.latent_dim, generator=draw))
        else:
            self.latents = None

    def images(self, noise_generator: torch.Generator | None = None) -> Tensor:
        if self.latents is not None:
            latents = self.latents
        else:
            if noise_generator is None:
                raise ValueError("random_input mode needs a noise_generator (a seeded torch.Generator) to draw inputs")
            latents = torch.randn(len(self.labels), self.generator.latent_dim, generator=noise_generator,
                                  device=noise_generator.device)
            latents = latents.to(self.labels.device, next(self.generator.parameters()).dtype)
        return self.generator(latents, self.labels)

    def parameter_counts(self) -> dict[str, int]:
        """Learnable numbers of the teacher: generator, latents and their total."""
        generator = sum(p.numel() for p in self.generator.parameters())
        latents = 0 if self.latents is None else self.latents.numel()
        return {"generator": generator, "latents": latents, "total": generator + latents}
