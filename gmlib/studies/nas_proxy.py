"""ConvNet depth (and width) as a neural-architecture-search proxy (DC's NAS experiment in
miniature; seed 001 Table 4).

Train every candidate ConvNet on a distilled set (cheap) and on real data (expensive), and
measure with Spearman's and Kendall's rank correlation whether the cheap proxy ranks the
candidates as real-data training does. Training is :func:`gmlib.evaluate.evaluate_across_networks`
(the protocol) and :func:`gmlib.evaluate.train_on_whole_set`; this module only chooses the
candidates, the seeds and the comparison.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from gmlib.eval_config import EvalConfig
from gmlib.evaluate import evaluate_across_networks, train_on_whole_set
from gmlib.fileio import json_ready
from gmlib.networks import count_parameters, get_network
from gmlib.progress import progress_bar
from gmlib.runinfo import describe_hardware, library_versions, resolve_device
from gmlib.synthetic import SyntheticSet


def rank_correlation(proxy: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """(Spearman's rho, Kendall's tau) between two scores of the same candidates (scipy.stats).

    1 means the proxy orders the candidates exactly as the reference does, -1 exactly reversed.
    Ties are ranked by their average rank (Kendall's tau-b); a constant list makes both NaN.
    """
    from scipy import stats

    proxy, reference = [float(x) for x in proxy], [float(x) for x in reference]
    if len(proxy) != len(reference):
        raise ValueError(f"the two score lists differ in length: {len(proxy)} vs {len(reference)}")
    if len(proxy) < 2:
        raise ValueError(f"a rank correlation needs at least 2 candidates, got {len(proxy)}")
    if len(set(proxy)) == 1 or len(set(reference)) == 1:
        return math.nan, math.nan  # no ranking to compare (scipy would warn and return NaN too)
    return float(stats.spearmanr(proxy, reference).statistic), float(stats.kendalltau(proxy, reference).statistic)


@dataclass(frozen=True)
class Candidate:
    """One ConvNet of the search space: its depth and width."""

    depth: int
    width: int

    @property
    def name(self) -> str:
        return f"ConvNet-D{self.depth}-W{self.width}"


@dataclass
class NASProxyResult:
    """Per candidate: accuracy when trained on the distilled set (``proxy``: mean and std over
    models) and on real data (``real``); their rank correlations, and whether both pick the same
    best candidate. Accuracies are fractions."""

    candidates: list[Candidate]
    parameters: list[int]
    proxy_mean: list[float]
    proxy_std: list[float]
    real_mean: list[float]
    real_std: list[float]
    proxy_seconds: list[float]
    real_seconds: list[float]
    spearman: float
    kendall: float
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def same_winner(self) -> bool:
        return int(np.argmax(self.proxy_mean)) == int(np.argmax(self.real_mean))

    def rows(self) -> list[list[str]]:
        """One table row per candidate: name, parameters, proxy and real accuracy (percent)."""
        return [[c.name, f"{p:,}", f"{100 * pm:.1f} ± {100 * ps:.1f}", f"{100 * rm:.1f} ± {100 * rs:.1f}"]
                for c, p, pm, ps, rm, rs in zip(self.candidates, self.parameters, self.proxy_mean, self.proxy_std,
                                                self.real_mean, self.real_std)]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["candidates"] = [dataclasses.asdict(c) | {"name": c.name} for c in self.candidates]
        data["same_winner"] = self.same_winner
        return json_ready(data)


def _positive_ints(what: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, int)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{what} must be a non-empty list of integers >= 1, got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must hold integers >= 1, got {value!r} in {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} repeats a value: {list(values)}")
    return tuple(values)


def nas_proxy(
    synthetic: SyntheticSet | tuple[Tensor, Tensor],
    real: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    depths: Sequence[int] = (1, 2, 3, 4),
    widths: Sequence[int] = (128,),
    proxy_config: EvalConfig = EvalConfig(),
    real_config: EvalConfig = EvalConfig(),
    real_epochs: int = 20,
    num_models: int = 1,
    real_models: int = 1,
    num_classes: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> NASProxyResult:
    """Rank ConvNets of every depth x width by training them on a distilled set and on real data.

    ``synthetic``: the distilled set (a SyntheticSet or (images, labels)); ``real``: the real
    training images and labels (a subset at small budgets); ``test``: the test images and labels.
    Each candidate is the ConvNet of ``proxy_config``/``real_config`` (their ``network_kwargs``
    such as the norm are kept) with that depth and width. On the distilled set it is evaluated
    with the protocol (:func:`gmlib.evaluate.evaluate_across_networks`, ``num_models`` models);
    on real data it is trained ``real_models`` times for ``real_epochs`` epochs
    (:func:`gmlib.evaluate.train_on_whole_set`, seeds ``seed, seed + 1, ...``). The proxy is good
    when the rank correlation of the two accuracy lists is near 1.
    """
    depths, widths = _positive_ints("depths", depths), _positive_ints("widths", widths)
    if isinstance(synthetic, SyntheticSet):
        syn_images, syn_labels = synthetic.detached()
    elif isinstance(synthetic, (tuple, list)) and len(synthetic) == 2:
        syn_images, syn_labels = synthetic
    else:
        raise ValueError(f"synthetic must be a SyntheticSet or an (images, labels) pair, "
                         f"got {type(synthetic).__name__}")
    for what, pair in (("real", real), ("test", test)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{what} must be an (images, labels) pair, got {type(pair).__name__}")
    for what, config in (("proxy_config", proxy_config), ("real_config", real_config)):
        if not isinstance(config, EvalConfig) or config.network not in ("convnet", "convnet_bn"):
            raise ValueError(f"{what} must be an EvalConfig of network 'convnet' or 'convnet_bn', got {config!r}")
    for what, value in (("real_epochs", real_epochs), ("num_models", num_models), ("real_models", real_models)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    device = resolve_device(device)
    test_images, test_labels = test
    if num_classes is None:
        num_classes = int(max(syn_labels.max(), real[1].max(), test_labels.max())) + 1

    candidates = [Candidate(d, w) for w in widths for d in depths]
    result = NASProxyResult(candidates, [], [], [], [], [], [], [], math.nan, math.nan)

    bar = progress_bar(len(candidates), "NAS proxy", enabled=progress)
    for candidate in candidates:
        variant = {"depth": candidate.depth, "width": candidate.width}
        proxy = dataclasses.replace(proxy_config, network_kwargs=dict(proxy_config.network_kwargs) | variant)
        begun = time.perf_counter()
        evaluation = evaluate_across_networks(syn_images, syn_labels, test_images, test_labels, [proxy.network], proxy,
                                              num_models, seed, num_classes=num_classes, device=device)[proxy.network]
        result.proxy_seconds.append(time.perf_counter() - begun)
        result.proxy_mean.append(evaluation.mean)
        result.proxy_std.append(evaluation.std)

        full = dataclasses.replace(real_config, network_kwargs=dict(real_config.network_kwargs) | variant)
        begun = time.perf_counter()
        accuracies = [
            train_on_whole_set(real[0], real[1], test_images, test_labels, real_epochs, config=full, seed=seed + k,
                               num_classes=num_classes, device=device, progress=False).accuracy
            for k in range(real_models)
        ]
        result.real_seconds.append(time.perf_counter() - begun)
        result.real_mean.append(float(np.mean(accuracies)))
        result.real_std.append(float(np.std(accuracies)))
        with torch.device("meta"):  # shape only: counting parameters costs nothing
            net = get_network(proxy.network, syn_images.shape[1], num_classes, tuple(syn_images.shape[2:]),
                              **dict(proxy.network_kwargs))
        result.parameters.append(count_parameters(net))
        bar.update()
    bar.close()

    if len(candidates) >= 2:
        result.spearman, result.kendall = rank_correlation(result.proxy_mean, result.real_mean)
    result.provenance = {"seed": seed, "device": str(device), "hardware": describe_hardware(device),
                         "versions": library_versions(), "proxy_config": json_ready(proxy_config.as_dict()),
                         "real_config": json_ready(real_config.as_dict()), "real_epochs": real_epochs,
                         "real_images": int(real[0].shape[0]), "num_models": num_models, "real_models": real_models}
    return result
