"""Hyperparameters changed while a model trains: which ones an optimizer can take
(:func:`optimizer_live_names`) and setting them on its param groups (:func:`apply_to_optimizer`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tunelab.distributions import ParamValue

logger = logging.getLogger("tunelab")

OPTIMIZER_LIVE = ("lr", "momentum", "weight_decay")
"""The hyperparameters the Trainer applies to the optimizer itself while it trains."""


def optimizer_live_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """``lr``, ``momentum`` (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) and
    ``weight_decay`` when every param group has them."""
    groups = optimizer.param_groups
    names = ["lr"]
    if all("momentum" in g or "betas" in g for g in groups):
        names.append("momentum")
    if all("weight_decay" in g for g in groups):
        names.append("weight_decay")
    return names


def apply_to_optimizer(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None,
    changes: Mapping[str, ParamValue],
) -> dict[str, ParamValue]:
    """Set the changed ``lr``, ``momentum`` and ``weight_decay`` on every param group; return
    those applied (the other names in ``changes`` are left alone).

    ``lr`` is the learning rate the run was started with, the schedule's reference: its base
    (``base_lrs``, LambdaLR, CosineAnnealingLR, StepLR, LinearLR...), the peak of a OneCycleLR
    (``max_lr``), the lower bound of a CyclicLR. Under a schedule, the whole schedule is scaled
    by new / old reference and goes on from where it is: the rate in effect now is scaled alike
    (a cosine at half its base, given ``lr=1e-3``, goes on from 5e-4 down to its end; a OneCycleLR
    keeps its warm-up, now to a peak of 1e-3, and its annealing), and the schedule's next steps
    keep it. Pass the scheduler that steps the optimizer (any torch scheduler, SequentialLR and
    ChainedScheduler included): without it, a per-step schedule sets its own rate back at its next
    step. Without a schedule, or under ReduceLROnPlateau, the rate is set as given. ``momentum``
    under a schedule that cycles it (OneCycleLR, CyclicLR with ``cycle_momentum``) sets the top of
    the cycle and scales its bottom alike.

    A value the optimizer cannot take (lr <= 0, momentum outside [0, 1), weight_decay < 0) is
    skipped with a warning. The rate of a :class:`~tunelab.torch.hypergradient.HypergradientOptimizer`
    adapts again from the new one (its factor goes back to 1, its warm-up and the ceiling after it end).
    """
    applied: dict[str, ParamValue] = {}
    groups = optimizer.param_groups
    schedulers = _schedulers(scheduler)
    for name, value in changes.items():
        if name not in OPTIMIZER_LIVE:
            continue
        number = _live_number(name, value)
        if number is None:
            continue
        for i, group in enumerate(groups):
            if name == "lr":
                if "hd_scale" in group:  # a HypergradientOptimizer: adapt again from the new rate, as set_lr does
                    group["hd_scale"] = 1.0
                    group["hd_warmup"] = group["hd_ceiling"] = None  # no warm-up, no ceiling after it
                    if "hd_trust" in group:
                        group["hd_trust"] = None  # nor the trust a clean warm-up gives its start
                _scale_lr(group, i, schedulers, number)
            elif name == "momentum":
                _set_momentum(group, i, schedulers, number)
            elif "weight_decay" in group:
                group["weight_decay"] = number
        applied[name] = number
    if "lr" in applied:
        for s in schedulers:
            s._last_lr = [_plain(group["lr"]) for group in groups]  # what get_last_lr() reads
    return applied


def _schedulers(scheduler: Any) -> list[Any]:
    """``scheduler`` and those it holds (SequentialLR, ChainedScheduler), outermost first."""
    if scheduler is None:
        return []
    out = [scheduler]
    for inner in getattr(scheduler, "_schedulers", None) or []:
        out.extend(_schedulers(inner))
    return out


def _scale_lr(group: dict[str, Any], i: int, schedulers: Sequence[Any], number: float) -> None:
    """Set group ``i``'s reference rate to ``number`` and scale its schedule (and its rate now) alike."""
    scheduled = [s for s in schedulers if not isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau)]
    if not scheduled:
        _set(group, "lr", number)
        return
    if "max_lr" in group and any(isinstance(s, torch.optim.lr_scheduler.OneCycleLR) for s in scheduled):
        reference = _plain(group["max_lr"])
    elif "initial_lr" in group:
        reference = _plain(group["initial_lr"])
    else:
        reference = _plain(group["lr"])
    if not reference > 0:  # a schedule that starts at 0 has nothing to scale: set its reference
        for key in ("initial_lr", "max_lr"):
            if key in group:
                _set(group, key, number)
        for s in scheduled:
            if getattr(s, "base_lrs", None) is not None and i < len(s.base_lrs):
                s.base_lrs[i] = number
        return
    ratio = number / reference

    def scaled(value: Any) -> float:  # the reference itself becomes exactly the value given
        plain = _plain(value)
        return number if plain == reference else plain * ratio

    for key in ("initial_lr", "max_lr", "min_lr"):
        if key in group:
            _set(group, key, scaled(group[key]))
    for s in scheduled:
        for attr in ("base_lrs", "max_lrs"):  # max_lrs: CyclicLR's top
            values = getattr(s, attr, None)
            if isinstance(values, list) and i < len(values):
                values[i] = scaled(values[i])
    outer = scheduled[0]
    if isinstance(outer, torch.optim.lr_scheduler.LambdaLR):  # its closed form: exactly what its next steps give
        _set(group, "lr", _plain(outer.base_lrs[i]) * outer.lr_lambdas[i](outer.last_epoch))
    else:
        _set(group, "lr", scaled(group["lr"]))


def _set_momentum(group: dict[str, Any], i: int, schedulers: Sequence[Any], number: float) -> None:
    """Set a group's momentum (Adam's ``betas[0]``); under a cycled momentum, its cycle's top."""
    top = group.get("max_momentum")
    cycled = isinstance(top, (int, float)) and top > 0 and any(getattr(s, "cycle_momentum", False) for s in schedulers)
    ratio = number / top if cycled and isinstance(top, (int, float)) else None
    if ratio is not None:
        group["max_momentum"] = number
        group["base_momentum"] = group["base_momentum"] * ratio
        for s in schedulers:
            for attr in ("max_momentums", "base_momentums"):  # CyclicLR reads its lists, not the group
                values = getattr(s, attr, None)
                if isinstance(values, list) and i < len(values):
                    values[i] = number if attr == "max_momentums" else values[i] * ratio
    if "betas" in group:
        group["betas"] = (group["betas"][0] * ratio if ratio is not None else number, group["betas"][1])
    elif "momentum" in group:
        group["momentum"] = group["momentum"] * ratio if ratio is not None else number


def _plain(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _set(group: dict[str, Any], key: str, value: float) -> None:
    """Set a group's rate in place when it is a tensor (a capturable or compiled optimizer reads it)."""
    if isinstance(group[key], torch.Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def _live_number(name: str, value: object) -> float | None:
    """A live value for the optimizer as a float, or None (logged) if the optimizer cannot take it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if name == "lr":
        ok = ok and number > 0
    elif name == "momentum":
        ok = ok and 0 <= number < 1
    else:
        ok = ok and number >= 0
    if not ok:
        logger.warning("live change %s=%r ignored: the optimizer cannot take it", name, value)
        return None
    return number
