"""Hyperparameters changed while a model trains: which ones an optimizer can take
(:func:`optimizer_live_names`) and setting them on its param groups (:func:`apply_to_optimizer`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

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
    scheduler: torch.optim.lr_scheduler.LambdaLR | None,
    changes: Mapping[str, ParamValue],
) -> dict[str, ParamValue]:
    """Set the changed ``lr``, ``momentum`` and ``weight_decay`` on every param group; return
    those applied (the other names in ``changes`` are left alone).

    ``lr`` is the base learning rate: under a schedule the schedule goes on from the new base
    (``base_lrs`` and the group's current lr are set together). A value the optimizer cannot
    take (lr <= 0, momentum outside [0, 1), weight_decay < 0) is skipped with a warning. The
    rate of a :class:`~tunelab.torch.hypergradient.HypergradientOptimizer` adapts again from the
    new one (its factor goes back to 1, its warm-up and the ceiling after it end).
    """
    applied: dict[str, ParamValue] = {}
    groups = optimizer.param_groups
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
                if scheduler is not None:
                    factor = scheduler.lr_lambdas[i](scheduler.last_epoch)
                    scheduler.base_lrs[i] = number
                    group["initial_lr"] = number
                    group["lr"] = number * factor
                else:
                    group["lr"] = number
            elif name == "momentum":
                if "betas" in group:
                    group["betas"] = (number, group["betas"][1])
                elif "momentum" in group:
                    group["momentum"] = number
            elif "weight_decay" in group:
                group["weight_decay"] = number
        applied[name] = number
    if scheduler is not None and "lr" in applied:
        scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reads
    return applied


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
