"""What every method's configuration shares: the network the method distils with, and how the
run is driven (checkpoints, evaluations during the run).

A method's configuration is a frozen dataclass that inherits :class:`RunSettings` (which declares
the shared fields ``network``, ``network_kwargs``, ``checkpoint_every``, ``eval_at``,
``eval_config`` and ``eval_models``, keyword-only), declares its own ``iterations`` (each method
has its paper's default) and calls :meth:`RunSettings.check_run_settings` from its
``__post_init__``, so these fields are declared once and normalised and checked the same way, with
the same messages, for DC, DSA, DM and MTT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from gmlib.checks import check_int, is_int
from gmlib.eval_config import EvalConfig
from gmlib.networks import check_network_kwargs


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The fields every method's frozen configuration dataclass shares, their checks, copies and
    plain data. ``network`` and ``network_kwargs``: the network the method distils with
    (:func:`gmlib.networks.get_network`'s name and keywords); ``checkpoint_every``: also write a
    checkpoint every K iterations (0: only by time, at the end and on a stop); ``eval_at``:
    evaluate the set after these iteration counts with ``eval_config`` (None: the profile
    protocol's defaults for the network) and ``eval_models`` networks."""

    network: str = "convnet"
    network_kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()
    checkpoint_every: int = 0
    eval_at: tuple[int, ...] = ()
    eval_config: EvalConfig | None = None
    eval_models: int = 20

    def check_run_settings(self) -> None:
        """Normalise ``network_kwargs`` (sorted pairs, so the config stays hashable) and ``eval_at``
        (sorted, distinct), and refuse bad values naming them."""
        if isinstance(self.network_kwargs, Mapping):
            object.__setattr__(self, "network_kwargs", tuple(sorted(self.network_kwargs.items())))
        check_network_kwargs(self.network, dict(self.network_kwargs))  # names the known networks and keywords
        check_int("iterations", self.iterations, 0)
        check_int("checkpoint_every", self.checkpoint_every, 0)
        check_int("eval_models", self.eval_models, 1)
        if isinstance(self.eval_at, int) or not all(is_int(i) for i in self.eval_at):
            raise ValueError(f"eval_at must be a sequence of iteration counts, got {self.eval_at!r}")
        outside = [i for i in self.eval_at if not 0 <= i <= self.iterations]
        if outside:
            raise ValueError(f"eval_at values {outside} lie outside [0, iterations={self.iterations}]")
        object.__setattr__(self, "eval_at", tuple(sorted(set(self.eval_at))))
        if self.eval_config is not None and not isinstance(self.eval_config, EvalConfig):
            raise ValueError(f"eval_config must be a gmlib.eval_config.EvalConfig or None, "
                             f"got {type(self.eval_config).__name__}")

    def replace(self, **changes: Any):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON, checkpoints and provenance."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["network_kwargs"] = dict(self.network_kwargs)
        data["eval_at"] = list(self.eval_at)
        data["eval_config"] = None if self.eval_config is None else self.eval_config.as_dict()
        return data
