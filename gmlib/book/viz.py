"""Pictures for the book: image grids, accuracy curves and bar charts (matplotlib only).

Images come in as normalised tensors (N, C, H, W) together with the dataset's mean and std, and
are turned back into pixels here, so notebooks never repeat the denormalisation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

from gmlib.data.container import denormalise


def to_pixels(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised (N, C, H, W) tensor -> (N, H, W, C) float array in [0, 1] for imshow."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(images.shape)}")
    pixels = denormalise(images.detach(), mean, std).clamp(0, 1)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: Tensor, mean: Sequence[float], std: Sequence[float], ncols: int, pad: int = 1) -> np.ndarray:
    """Tile images into one (rows*H, cols*W, C) array, row-major, with white padding."""
    pixels = to_pixels(images, mean, std)
    n, h, w, c = pixels.shape
    nrows = -(-n // ncols)
    grid = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), dtype=pixels.dtype)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = pixels[i]
    return grid


def show_images(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    ncols: int,
    *,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax=None,
    scale: float = 0.6,
):
    """Show a grid of images with optional row/column labels; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, mean, std, ncols)
    if ax is None:
        nrows = -(-len(images) // ncols)
        _, ax = plt.subplots(figsize=(max(2.0, scale * ncols), max(1.5, scale * nrows)))
    cmap = "gray" if grid.shape[-1] == 1 else None
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap=cmap, vmin=0, vmax=1)
    h, w = images.shape[-2:]
    ax.set_xticks([(w + 1) * i + w / 2 for i in range(len(col_labels))] if col_labels else [])
    ax.set_xticklabels(col_labels or [], fontsize=10)
    ax.set_yticks([(h + 1) * i + h / 2 for i in range(len(row_labels))] if row_labels else [])
    ax.set_yticklabels(row_labels or [], fontsize=10)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=12)
    return ax


def plot_accuracy_curve(ax, xs: Sequence[float], means: Sequence[float], stds: Sequence[float], label: str, **style):
    """Mean accuracy with a +-1 std band, in percent."""
    means_a, stds_a = np.asarray(means) * 100, np.asarray(stds) * 100
    (line,) = ax.plot(xs, means_a, label=label, **{"marker": "o", **style})
    ax.fill_between(xs, means_a - stds_a, means_a + stds_a, alpha=0.2, color=line.get_color())
    return line


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]):
    """A table that renders as a real table in JupyterLab and in the book (IPython Markdown)."""
    from IPython.display import Markdown

    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells, expected {len(headers)}")
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")  # a bare | would end the cell (e.g. in |cos|)

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return Markdown("\n".join(lines))
