"""What every method's configuration shares: the network the method distils with, and how the
run is driven (checkpoints, evaluations during the run).

A method's configuration is a frozen dataclass with the fields ``iterations``, ``network``,
``network_kwargs``, ``checkpoint_every``, ``eval_at``, ``eval_config`` and ``eval_models``; it
inherits :class:`RunSettings` and calls :meth:`RunSettings.check_run_settings` from its
``__post_init__``, so these fields are normalised and checked the same way, with the same
messages, for DC, DSA, DM and MTT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from gmlib.checks import check_int, is_int
from gmlib.eval_config import EvalConfig
from gmlib.networks import check_network_kwargs


class RunSettings:
    """Mixin for a method's frozen configuration dataclass: checks, copies and plain data."""

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
