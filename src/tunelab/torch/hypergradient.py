"""Tuning the learning rate by gradient: :class:`HypergradientOptimizer` wraps SGD (with or
without momentum), Adam or AdamW and, after every step, moves each param group's learning rate
along its hypergradient (Baydin et al., "Online Learning Rate Adaptation with Hypergradient
Descent", ICLR 2018), in the multiplicative, normalised form.

The hypergradient of the loss with respect to the learning rate is ``-g_t . u_{t-1}``: the new
gradient against the previous update direction (for plain SGD the previous gradient, with
momentum the previous momentum step, for Adam ``m_hat / (sqrt(v_hat) + eps)``). The direction is
measured, not recomputed: it is the parameters' change over the previous step, ``p_before -
p_after``, so it is exact for every optimizer (momentum, Nesterov, weight decay, AdamW's
decoupled decay) and costs one copy of the parameters. The rate then moves by the cosine of the
two, a scale-free number in [-1, 1]::

    scale_t = scale_{t-1} * exp(hyper_lr * (cos(g_t, u_{t-1}) + drift))

which keeps it positive: consecutive steps that agree (the rate is too small to cross the valley)
raise it, steps that turn back (it overshoots) lower it. Two departures from the paper, both
options: the factor starts at ``start_factor`` (0.1: a warm-up that the hypergradient ends, so a
start at the edge of stability does not damage the network before the first overshoot turns the
rate down), and a small ``drift`` (0.025) counters the hypergradient's greedy bias toward rates
below the best fixed one; ``start_factor=1.0, drift=0.0`` is the paper's rule.

**How it composes.** Each param group keeps its ``lr`` (what you, a scheduler or a live change
set: the *scheduled* rate) and an adapted factor ``hd_scale`` (``start_factor`` at first); the inner
optimizer steps with ``lr * hd_scale``, the *effective* rate (:attr:`HypergradientOptimizer.lrs`,
what :meth:`Trainer.fit <tunelab.torch.Trainer.fit>` reports as ``lr``). A scheduler on top
therefore multiplies the adapted rate by its own factor, whichever kind it is (LambdaLR sets
``lr``, ExponentialLR multiplies it). Setting a group's ``lr`` through
:meth:`HypergradientOptimizer.set_lr` (a live change, ``tunelab set RUN lr=...``) restarts the
adaptation from that value (``hd_scale`` back to 1). ``lr_bounds=(low, high)`` keeps the
effective rate within bounds.

**State.** The previous direction of each parameter is kept beside the wrapped optimizer's state
(never inside it: Adam starts a parameter's state when it finds it empty) and saved under the
``"hypergradient"`` key of :meth:`~HypergradientOptimizer.state_dict`; the factor is the group
key ``hd_scale``. Both are in the state dict, so a checkpoint resumes bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from tunelab.errors import ConfigError

DEFAULT_HYPER_LR = 0.1
"""The default ``hyper_lr``: the rate moves by at most ``exp(0.1)``, about 10%, per step (tuned on
a small MLP on the digits over starts from 1e-5 to 1e-1: 0.05, 0.1, 0.2 and 0.4 tried, 0.1 best;
see ``benchmarks/hypergradient.py``)."""

DEFAULT_START_FACTOR = 0.1
"""The default ``start_factor``: the first steps take a tenth of ``lr`` and the rate climbs from there
as fast as consecutive steps agree (a warm-up: from 0.1 to 1 in about 25 agreeing steps)."""
DEFAULT_DRIFT = 0.025
"""The default ``drift``: the rate settles where steps that turn back are slightly more frequent
than steps that agree (0 is the paper's rule; 0.025 did better on the benchmark's 4 cases, 0.05 was
worse with Adam on the CNN started at 0.1 and 0.1 worse everywhere)."""

SCALE_KEY = "hd_scale"
"""The param-group key of the adapted factor (the effective rate is ``lr * hd_scale``)."""
STATE_KEY = "hypergradient"
"""The key of :meth:`HypergradientOptimizer.state_dict` holding ``{"prev": {index: direction}}``,
each parameter's previous update direction by its index in the param groups (torch's numbering)."""


class HypergradientOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose learning rate adapts along its hypergradient after each step.

    Args:
        optimizer: the optimizer to wrap (``torch.optim.SGD`` with or without momentum, ``Adam``,
            ``AdamW``; any optimizer with an ``lr`` works, these are the ones measured).
        hyper_lr: how fast the rate moves: each step multiplies it by ``exp(hyper_lr * (cos + drift))``,
            ``cos`` in [-1, 1] (default :data:`DEFAULT_HYPER_LR`).
        per_group: adapt each param group's rate from its own parameters (True) or all of them
            by one factor from all the parameters (False).
        lr_bounds: ``(low, high)``: keep the effective rate within them (None: no bounds).
        start_factor: the adapted factor's start: the first step takes ``lr * start_factor``
            (default :data:`DEFAULT_START_FACTOR`: a warm-up the hypergradient ends, which keeps a
            start at the edge of stability from damaging the network in its first steps; 1.0
            starts at ``lr`` exactly, as in the paper).
        drift: added to the cosine, ``exp(hyper_lr * (cos + drift))``: a small positive drift
            counters the hypergradient's short-horizon bias toward too small rates (default
            :data:`DEFAULT_DRIFT`).

    It shares ``param_groups`` and ``state`` with the wrapped optimizer; ``step``,
    ``zero_grad``, ``state_dict``, ``load_state_dict`` and ``add_param_group`` behave as
    torch's, and schedulers accept it.

    Examples:
        The rate of a far too small start grows on a quadratic bowl:

        >>> import torch
        >>> from tunelab.torch import HypergradientOptimizer
        >>> w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        >>> opt = HypergradientOptimizer(torch.optim.SGD([w], lr=1e-4), hyper_lr=0.1, start_factor=1.0)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> opt.lrs[0] > 1e-3, opt.param_groups[0]["lr"]  # effective rate; the scheduled one is kept
        (True, 0.0001)
        >>> opt.set_lr(0.01)                               # a live change: adapt again from 0.01
        >>> opt.lrs
        [0.01]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        hyper_lr: float = DEFAULT_HYPER_LR,
        per_group: bool = True,
        lr_bounds: tuple[float, float] | None = None,
        start_factor: float = DEFAULT_START_FACTOR,
        drift: float = DEFAULT_DRIFT,
    ) -> None:
        if isinstance(optimizer, HypergradientOptimizer):
            raise ConfigError("HypergradientOptimizer(optimizer=...) is already a HypergradientOptimizer: wrap it once")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                "HypergradientOptimizer(optimizer=...) must be a torch.optim.Optimizer such as "
                f"torch.optim.SGD(model.parameters(), lr=0.01), got {type(optimizer).__name__}"
            )
        if not all("lr" in g for g in optimizer.param_groups):
            raise ConfigError("HypergradientOptimizer(optimizer=...) needs an 'lr' in every param group")
        if not _positive(hyper_lr):
            raise ConfigError(
                f"HypergradientOptimizer(hyper_lr=...) must be a positive number such as {DEFAULT_HYPER_LR}, "
                f"got {hyper_lr!r}"
            )
        if not _positive(start_factor):
            raise ConfigError(
                "HypergradientOptimizer(start_factor=...) must be a positive number (1.0: the first step takes lr), "
                f"got {start_factor!r}"
            )
        if isinstance(drift, bool) or not isinstance(drift, (int, float)) or not -1 < drift < 1:
            raise ConfigError(
                f"HypergradientOptimizer(drift=...) must be a number in (-1, 1) such as 0.0, got {drift!r}"
            )
        if not isinstance(per_group, bool):
            raise ConfigError(f"HypergradientOptimizer(per_group=...) must be True or False, got {per_group!r}")
        if lr_bounds is not None:
            ok = isinstance(lr_bounds, (tuple, list)) and len(lr_bounds) == 2 and all(_positive(b) for b in lr_bounds)
            if not ok or lr_bounds[0] >= lr_bounds[1]:
                raise ConfigError(
                    "HypergradientOptimizer(lr_bounds=...) must be (low, high) with 0 < low < high, e.g. "
                    f"(1e-6, 1.0), or None, got {lr_bounds!r}"
                )
            lr_bounds = (float(lr_bounds[0]), float(lr_bounds[1]))
        # torch's bookkeeping (hooks, the profiler's step patch) on a placeholder group, then the
        # wrapped optimizer's own groups and state, shared rather than copied.
        super().__init__([{"params": [torch.empty(0, requires_grad=True)]}], dict(optimizer.defaults))
        self.optimizer = optimizer
        self.hyper_lr = float(hyper_lr)
        self.per_group = per_group
        self.lr_bounds = lr_bounds
        self.start_factor = float(start_factor)
        self.drift = float(drift)
        self._prev: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> previous direction (a view of a bucket)
        self._cache_key: list[tuple[torch.Tensor, ...]] | None = None
        self._cache: list[list[_Bucket]] = []
        self._share(self.start_factor)

    def _share(self, start: float) -> None:
        """Share the wrapped optimizer's groups and state (again after it loaded a state dict); a
        group without a factor starts at ``start``."""
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        for group in self.param_groups:
            group.setdefault(SCALE_KEY, start)
            if self.lr_bounds is not None and group["lr"] > 0:
                group[SCALE_KEY] = self._clamp(group["lr"], group[SCALE_KEY])

    # -- the rates -------------------------------------------------------------------------------
    @property
    def lrs(self) -> list[float]:
        """The effective learning rate of each param group: its ``lr`` times the adapted factor."""
        return [float(g["lr"]) * float(g.get(SCALE_KEY, 1.0)) for g in self.param_groups]

    def set_lr(self, lr: float, group: int | None = None) -> None:
        """Set the learning rate of one param group (or all) and adapt again from it."""
        if not _positive(lr):
            raise ConfigError(f"set_lr(lr=...) must be a positive number, got {lr!r}")
        groups = self.param_groups if group is None else [self.param_groups[group]]
        for g in groups:
            g["lr"] = float(lr)
            g[SCALE_KEY] = 1.0 if self.lr_bounds is None else self._clamp(float(lr), 1.0)

    def _clamp(self, lr: float, scale: float) -> float:
        assert self.lr_bounds is not None
        low, high = self.lr_bounds
        return min(max(scale, low / lr), high / lr)

    # -- torch's optimizer -----------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Adapt each group's rate from the new gradients and the previous direction, then take
        the wrapped optimizer's step at the effective rate (and note its direction)."""
        groups = self.param_groups
        buckets = self._buckets()
        self._adapt(groups, buckets)
        scheduled = [g["lr"] for g in groups]
        for g in groups:
            g["lr"] = g["lr"] * g[SCALE_KEY]
        for group_buckets in buckets:
            for b in group_buckets:
                torch.cat(b.flats, out=b.flat)  # p_before; p_before - p_after after the step
        try:
            if closure is None:
                loss = self.optimizer.step()
            else:
                with torch.enable_grad():
                    loss = self.optimizer.step(closure)  # type: ignore[arg-type]
        finally:
            for g, lr in zip(groups, scheduled, strict=True):
                g["lr"] = lr
        for group_buckets in buckets:
            for b in group_buckets:
                torch.cat(b.flats, out=b.rows[0])  # the gradient row is free now
                b.flat.sub_(b.rows[0])
                if not b.ready:  # the first step: the wrapped optimizer has made its state now
                    for p, view in zip(b.params, b.views, strict=True):
                        self._prev[p] = view
                    b.ready = True
        return loss

    def _buckets(self) -> list[list[_Bucket]]:
        """Each group's parameters by device and dtype, each bucket with one flat buffer of the
        previous direction (its views are the parameters' directions), made again when the groups
        changed or a state dict was loaded."""
        key = [tuple(g["params"]) for g in self.param_groups]
        if self._cache_key == key and all(b.current() for bs in self._cache for b in bs):
            return self._cache
        cache: list[list[_Bucket]] = []
        for params in key:
            by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in params:
                by_kind.setdefault((p.device, p.dtype), []).append(p)
            cache.append([_Bucket(ps, [self._prev.get(p) for p in ps]) for ps in by_kind.values()])
            for b in cache[-1]:
                if b.ready:
                    for p, v in zip(b.params, b.views, strict=True):
                        self._prev[p] = v
        self._cache_key, self._cache = key, cache
        return cache

    def _adapt(self, groups: list[dict[str, Any]], buckets: list[list[_Bucket]]) -> None:
        """Multiply each group's ``hd_scale`` by ``exp(hyper_lr * (cos(g_t, u_{t-1}) + drift))``."""
        stats = [[0.0, 0.0, 0.0] for _ in groups]  # per group: g.u, |g|^2, |u|^2
        for i, group_buckets in enumerate(buckets):
            for b in group_buckets:
                if not b.ready:
                    continue
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in b.params]
                torch.cat([g.reshape(-1) for g in grads], out=b.rows[0])
                gg, gu, uu = torch.cat([torch.mv(b.rows, b.rows[0]), b.flat.dot(b.flat).reshape(1)]).tolist()
                stats[i][0] += gu
                stats[i][1] += gg
                stats[i][2] += uu
        if not self.per_group:
            total = [sum(column) for column in zip(*stats, strict=True)]
            stats = [total for _ in groups]
        for group, (dot, g2, d2) in zip(groups, stats, strict=True):
            denominator = math.sqrt(g2 * d2)
            scale = group[SCALE_KEY]
            if denominator > 0 and math.isfinite(dot / denominator):
                scale *= math.exp(self.hyper_lr * (max(-1.0, min(1.0, dot / denominator)) + self.drift))
            if self.lr_bounds is not None and group["lr"] > 0:
                scale = self._clamp(group["lr"], scale)
            group[SCALE_KEY] = scale

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the wrapped optimizer (its factor starts at ``start_factor``)."""
        if "optimizer" not in self.__dict__:  # torch's __init__ adds a placeholder group
            super().add_param_group(param_group)
            return
        self.optimizer.add_param_group(param_group)
        self._share(self.start_factor)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict (its groups with their ``hd_scale``) and, under
        ``"hypergradient"``, each parameter's previous direction by its index."""
        state = self.optimizer.state_dict()
        params = [p for g in self.param_groups for p in g["params"]]
        state[STATE_KEY] = {"prev": {i: self._prev[p] for i, p in enumerate(params) if p in self._prev}}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load :meth:`state_dict`'s output (or a plain optimizer's: the factors start at 1 and the
        first step has no previous direction)."""
        state_dict = dict(state_dict)
        saved = state_dict.pop(STATE_KEY, None) or {}
        self.optimizer.load_state_dict(state_dict)
        self._share(1.0)  # a plain optimizer's state: a trained run goes on at its rate
        params = [p for g in self.param_groups for p in g["params"]]
        self._prev = {}
        for index, direction in saved.get("prev", {}).items():
            p = params[int(index)]
            self._prev[p] = direction.to(dtype=p.dtype, device=p.device)
        self._cache_key = None

    def __repr__(self) -> str:
        bounds = f", lr_bounds={self.lr_bounds}" if self.lr_bounds is not None else ""
        return (f"HypergradientOptimizer({self.optimizer!r}, hyper_lr={self.hyper_lr}, "
                f"per_group={self.per_group}{bounds}, start_factor={self.start_factor}, drift={self.drift})")


class _Bucket:
    """Parameters of one group, device and dtype: ``rows``, two flat buffers, the new gradient
    (row 0, filled at each step) and the previous direction (row 1; ``views``: one view of it per
    parameter, shaped like it), so that one matrix product gives every dot product."""

    def __init__(self, params: list[torch.Tensor], saved: list[torch.Tensor | None]) -> None:
        self.params = params
        size = sum(p.numel() for p in params)
        self.rows = torch.zeros(2, size, dtype=params[0].dtype, device=params[0].device)
        self.flat = self.rows[1]
        # The parameters, flat: views (no copy) when they are contiguous, else copied at each use.
        self.contiguous = all(p.is_contiguous() for p in params)
        self._flats = [p.detach().view(-1) for p in params] if self.contiguous else []
        self.pointers = [p.data_ptr() for p in params]
        self.views: list[torch.Tensor] = []
        offset = 0
        for p in params:
            self.views.append(self.flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        self.ready = all(d is not None for d in saved)
        if self.ready:
            torch._foreach_copy_(self.views, saved)  # type: ignore[arg-type]


    @property
    def flats(self) -> list[torch.Tensor]:
        """The parameters as flat tensors, in order."""
        return self._flats if self.contiguous else [p.detach().reshape(-1) for p in self.params]

    def current(self) -> bool:
        """Whether the flat views still show the parameters (no ``p.data = ...`` since)."""
        return all(p.data_ptr() == q for p, q in zip(self.params, self.pointers, strict=True))


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def effective_lr(optimizer: torch.optim.Optimizer, group: int = 0) -> float:
    """The rate a param group steps with: its ``lr`` times its adapted factor (1 when none)."""
    g = optimizer.param_groups[group]
    return float(g["lr"]) * float(g.get(SCALE_KEY, 1.0))


__all__ = ["DEFAULT_HYPER_LR", "HypergradientOptimizer", "effective_lr"]
