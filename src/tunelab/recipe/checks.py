"""The sanity checks that come before any search (steps a. to c.).

a. :func:`check_initial_loss`: an untrained model's loss is what chance predicts (ln C for
   C classes); far from it, the head, the labels or the loss is wrong.
b. :func:`overfit_small_sample`: a few minibatches, no regularisation, a few learning
   rates: a model that cannot reach ~100% training accuracy there cannot learn at all.
c. :func:`lr_range_test`: short runs (100 steps) on the full training set over log-spaced
   learning rates; those where the loss falls significantly, below the first that
   diverges, make the range the search starts from.

Each returns a :class:`~tunelab.recipe.steps.StepResult` with its evidence, and runs in the
calling process with a fixed seed: the same model, the same batches, the same verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError
from tunelab.recipe.steps import FAIL, PASS, SKIP, StepResult
from tunelab.torch import Data, Tensors, Trainer

ADAPTIVE_OVERFIT_LRS = (1e-3, 1e-2, 1e-4)
SGD_OVERFIT_LRS = (1e-2, 1e-1, 1e-3)
"""Tried in this order (the usual value first) until one fits the sample."""
RANGE_LRS = tuple(float(v) for v in np.logspace(-5, 0, 11))
"""The range test's default learning rates: 1e-5 to 1, two per decade."""
DIVERGENCE_FACTOR = 2.0
"""A run whose smoothed loss climbs past this multiple of the initial loss has diverged."""


def _unregularized(trainer: Trainer, params: Mapping[str, ParamValue] | None) -> dict[str, ParamValue]:
    return trainer.default_params(**{"weight_decay": 0.0, **trainer.unregularized, **(params or {})})


# -- a. initial loss ---------------------------------------------------------------------------
def check_initial_loss(
    trainer: Trainer,
    params: Mapping[str, ParamValue] | None = None,
    *,
    expected: float | None = None,
    tolerance: float = 0.25,
    n_batches: int = 10,
    seed: int = 0,
) -> StepResult:
    """Compare an untrained model's loss with its expected value.

    Args:
        trainer: what to check.
        params: hyperparameters of the model (default: the trainer's defaults with its
            ``unregularized`` values: dropout and the like off).
        expected: the expected loss; default the trainer's ``expected_initial_loss``, else
            ``ln C`` for C-class cross-entropy. Without one the step is skipped.
        tolerance: the largest relative difference that passes (0.25: within 25%).
        n_batches: training batches the loss is averaged over.

    Examples:
        >>> import torch
        >>> from tunelab.recipe import check_initial_loss
        >>> from tunelab.torch import Trainer
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 2, generator=g)
        >>> y = (x[:, 0] + x[:, 1] > 0).long()
        >>> def build(params):
        ...     return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> trainer = Trainer(build, train=(x[:192], y[:192]), val=(x[192:], y[192:]), device="cpu")
        >>> result = check_initial_loss(trainer)
        >>> result.verdict, round(result.evidence["expected"], 4)      # ln 2 for two classes
        ('pass', 0.6931)

        A head whose outputs are scaled far too large fails, and the message says where to look:

        >>> def too_confident(params):
        ...     model = build(params)
        ...     with torch.no_grad():
        ...         model[2].weight.mul_(100.0)
        ...     return model
        >>> result = check_initial_loss(Trainer(too_confident, train=(x, y), val=(x, y), device="cpu"))
        >>> result.verdict, "model's head" in result.message
        ('fail', True)
    """
    _check_fraction("check_initial_loss", "tolerance", tolerance)
    _check_count("check_initial_loss", "n_batches", n_batches)
    if expected is not None and not (isinstance(expected, (int, float)) and not isinstance(expected, bool)
                                     and math.isfinite(expected) and expected > 0):
        raise ConfigError(f"check_initial_loss(expected=...) must be a positive number (the untrained model's loss, "
                          f"e.g. ln 10 = 2.30 for 10 classes) or None, got {expected!r}")
    start = time.perf_counter()
    params = _unregularized(trainer, params)
    train, _ = trainer.load_data()
    model = trainer.build_model(params, seed)
    model.train()  # what the first training step sees (batch norm on batch statistics)
    losses: list[float] = []
    n_outputs = 0
    max_label = -1
    with torch.no_grad():
        for i, (xb, yb) in enumerate(trainer.batches(train, trainer.batch_size_of(params))):
            if i >= n_batches:
                break
            out = model(xb)
            n_outputs = int(out.shape[1]) if out.ndim == 2 else 0
            if trainer.classifier and not yb.is_floating_point():
                max_label = max(max_label, int(yb.max()))
                if n_outputs and max_label >= n_outputs:
                    return StepResult(
                        "initial_loss", FAIL,
                        f"the labels go up to {max_label} but the model has {n_outputs} outputs: make the "
                        "head's output size the number of classes",
                        {"n_outputs": n_outputs, "max_label": max_label}, time.perf_counter() - start,
                    )
            losses.append(float(trainer.loss_fn(out, yb)))
    loss = float(np.mean(losses))
    source = "given"
    if expected is None:
        expected = trainer.expected_initial_loss
    if expected is None and trainer.classifier and n_outputs >= 2:
        expected, source = math.log(n_outputs), f"ln {n_outputs} ({n_outputs} classes)"
    if expected is None and _binary_logits(trainer) and getattr(trainer.loss, "pos_weight", None) is None \
            and getattr(trainer.loss, "weight", None) is None:
        expected, source = math.log(2), "ln 2 (binary cross-entropy on logits: near-zero logits at the start)"
    evidence: dict[str, Any] = {"loss": loss, "expected": expected, "source": source, "tolerance": tolerance,
                                "batches": len(losses), "params": _jsonable(params)}
    seconds = time.perf_counter() - start
    if expected is None:
        return StepResult("initial_loss", SKIP,
                          f"initial loss {loss:.4g}; no expected value for this loss: pass "
                          "Trainer(expected_initial_loss=...) to check it", evidence, seconds)
    if not math.isfinite(loss):
        return StepResult("initial_loss", FAIL,
                          f"the untrained model's loss is {loss}: check the model's output and the loss",
                          evidence, seconds)
    relative = abs(loss - expected) / expected
    evidence["relative_error"] = relative
    if relative <= tolerance:
        return StepResult("initial_loss", PASS,
                          f"initial loss {loss:.4f}, expected {expected:.4f} ({source}): within {tolerance:.0%}",
                          evidence, seconds)
    return StepResult(
        "initial_loss", FAIL,
        f"initial loss {loss:.4f} is far from the expected {expected:.4f} ({source}; off by {relative:.0%}, "
        f"tolerance {tolerance:.0%}): likely a bug in the model's head (outputs scaled wrong, an activation "
        "or softmax before the loss), in the labels, or in the loss",
        evidence, seconds,
    )


# -- b. overfit a small sample -----------------------------------------------------------------
def overfit_small_sample(
    trainer: Trainer,
    params: Mapping[str, ParamValue] | None = None,
    *,
    n_batches: int = 8,
    lrs: Sequence[float] | None = None,
    max_steps: int = 300,
    target: float = 0.99,
    seed: int = 0,
) -> StepResult:
    """Train on ``n_batches`` minibatches without regularisation until the model fits them.

    Success: training accuracy (on the sample, in eval mode) of at least ``target`` for a
    classifier (binary cross-entropy on logits included: a logit above 0 predicts 1), or a loss
    below ``1 - target`` of the untrained model's on the sample otherwise, at one of ``lrs``
    (default: 1e-3, 1e-2, 1e-4 for adaptive optimizers, 1e-2, 1e-1, 1e-3 for SGD, in that order) within
    ``max_steps`` optimiser steps. The evidence names the parameters that are frozen or that
    training never changed.
    """
    _check_count("overfit_small_sample", "n_batches", n_batches)
    _check_count("overfit_small_sample", "max_steps", max_steps)
    _check_fraction("overfit_small_sample", "target", target)
    start = time.perf_counter()
    params = _unregularized(trainer, params)
    if lrs is None:
        lrs = SGD_OVERFIT_LRS if _fixed_rate(trainer, params).get("optimizer") == "sgd" else ADAPTIVE_OVERFIT_LRS
    lrs = _check_lrs("overfit_small_sample", lrs)
    train, _ = trainer.load_data()
    batch_size = trainer.batch_size_of(params) if isinstance(train, tuple) else trainer.batch_size
    untrained = trainer.build_model(params, seed)  # first: the batches' inputs come in its dtype
    batches = _first_batches(trainer, train, batch_size, n_batches)
    examples = sum(int(y.shape[0]) for _, y in batches)
    runs: list[dict[str, Any]] = []
    frozen: list[str] = []
    unchanged: list[str] = []
    reached: dict[str, Any] | None = None
    for lr in lrs:
        model = trainer.build_model(params, seed)
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        try:
            optimizer = trainer.make_optimizer(model, {**params, "lr": lr, **_fixed_rate(trainer, params)})
        except ConfigError as e:
            return StepResult("overfit", FAIL, f"cannot train at all: {e}",
                              {"examples": examples, "frozen": frozen}, time.perf_counter() - start)
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        curve: list[list[float | None]] = []
        first_loss, _ = _fit_on(trainer, model, batches)  # the untrained model's loss on the sample
        run: dict[str, Any] = {"lr": lr, "reached": False}
        for step in range(1, max_steps + 1):
            xb, yb = batches[(step - 1) % len(batches)]
            model.train()
            loss = trainer.loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if step % len(batches) == 0 or step == max_steps:
                sample_loss, sample_acc = _fit_on(trainer, model, batches)
                curve.append([step, sample_loss, sample_acc])
                if not math.isfinite(sample_loss):
                    break
                if _fitted(trainer, sample_loss, sample_acc, first_loss, target):
                    run["reached"] = True
                    break
        unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), initial[n])]
        run.update(steps=int(curve[-1][0] or 0), loss=curve[-1][1], acc=curve[-1][2], curve=curve)
        runs.append(run)
        if run["reached"]:
            reached = run
            break
    n_params = sum(p.numel() for p in untrained.parameters())
    n_frozen = sum(p.numel() for n, p in untrained.named_parameters() if n in frozen)
    evidence: dict[str, Any] = {
        "examples": examples, "batches": len(batches), "target": target, "runs": runs,
        "frozen": frozen, "unchanged": unchanged, "frozen_fraction": n_frozen / max(n_params, 1),
        "params": _jsonable(params),
    }
    seconds = time.perf_counter() - start
    accuracy = trainer.classifier or _binary_logits(trainer)
    measure = "training accuracy" if accuracy else "training loss"
    if reached is not None:
        shown = f"{reached['acc']:.1%}" if accuracy else f"{reached['loss']:.3g}"
        return StepResult("overfit", PASS,
                          f"{measure} {shown} on {examples} examples after {reached['steps']} steps at lr "
                          f"{reached['lr']:.3g}: the model can learn", evidence, seconds)
    best = max(runs, key=lambda r: r["acc"]) if accuracy else min(runs, key=lambda r: r["loss"])
    shown = f"{best['acc']:.1%}" if accuracy else f"{best['loss']:.3g}"
    why = []
    if frozen:
        why.append(f"{evidence['frozen_fraction']:.0%} of its weights are frozen (requires_grad=False: "
                   f"{_names(frozen)})")
    if unchanged:
        why.append(f"training never changed {_names(unchanged)} (no gradient reaches them)")
    hint = "; ".join(why) if why else "check the model, the loss and the optimizer, or raise max_steps"
    return StepResult(
        "overfit", FAIL,
        f"could not overfit {examples} training examples: best {measure} {shown} after {best['steps']} steps "
        f"(lr {best['lr']:.3g}; learning rates tried: {', '.join(f'{lr:.3g}' for lr in lrs)}): the model or the "
        f"optimizer cannot learn; {hint}",
        evidence, seconds,
    )


def _first_batches(trainer: Trainer, train: Data, batch_size: int, n: int) -> list[Tensors]:
    out: list[Tensors] = []
    for batch in trainer.batches(train, batch_size):
        out.append(batch)
        if len(out) == n:
            break
    return out


@torch.no_grad()
def _fit_on(trainer: Trainer, model: torch.nn.Module, batches: list[Tensors]) -> tuple[float, float | None]:
    model.eval()
    binary = _binary_logits(trainer)
    loss_sum, correct, count, labels = 0.0, 0, 0, 0
    for xb, yb in batches:
        out = model(xb)
        n = int(yb.shape[0])
        loss_sum += float(trainer.loss_fn(out, yb)) * n
        if trainer.classifier:
            correct += int((out.argmax(dim=1) == trainer.class_labels(out, yb)).sum())
            labels += n
        elif binary:  # each output a logit: above 0 predicts 1 (several per example: multi-label)
            correct += int(((out > 0) == (yb.reshape(out.shape) > 0.5)).sum())
            labels += int(out.numel())
        count += n
    model.train()
    return loss_sum / count, (correct / labels if labels else None)


def _binary_logits(trainer: Trainer) -> bool:
    """Whether the trainer's loss is binary cross-entropy on logits (``nn.BCEWithLogitsLoss``, or
    ``F.binary_cross_entropy_with_logits`` itself): a classifier whose accuracy needs no argmax."""
    return trainer.binary


def _fitted(trainer: Trainer, loss: float, acc: float | None, first_loss: float, target: float) -> bool:
    if acc is not None:
        return acc >= target
    return loss <= (1.0 - target) * first_loss


# -- c. learning-rate range --------------------------------------------------------------------
def _fixed_rate(trainer: Trainer, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    """The optimizer the checks train with, ``{"optimizer": name}`` (``{}`` for a factory): the one
    ``params`` name, else the trainer's, at a fixed rate (an ``-hd`` one without its adaptation)."""
    choice = params.get("optimizer", trainer.optimizer)
    return {"optimizer": choice.removesuffix("-hd")} if isinstance(choice, str) else {}


def lr_range_test(
    trainer: Trainer,
    params: Mapping[str, ParamValue] | None = None,
    *,
    lrs: Sequence[float] | None = None,
    steps: int = 100,
    min_drop: float = 0.3,
    seed: int = 0,
) -> StepResult:
    """Find the learning rates that make the loss fall within ``steps`` optimiser steps.

    One short run per learning rate in ``lrs`` (default :data:`RANGE_LRS`, 1e-5 to 1), each from
    the same initial weights over the same shuffled batches of the full training set. A run
    *falls* when its final loss (the mean of its last 10 steps) is at most ``1 - min_drop`` of
    the initial loss; it *diverges* when its loss turns NaN or infinite, or its smoothed loss
    climbs past :data:`DIVERGENCE_FACTOR` times the initial loss or ends above it (a run that
    ends above it below the smallest rate that falls is *slow*: a flat curve's noise). The range
    spans the learning rates that fall, below the smallest that diverges; its evidence holds
    every run's loss curve (loss against step, for a plot) and the best learning rate.
    """
    _check_count("lr_range_test", "steps", steps)
    _check_fraction("lr_range_test", "min_drop", min_drop)
    lrs = sorted(_check_lrs("lr_range_test", lrs if lrs is not None else RANGE_LRS))
    start = time.perf_counter()
    params = trainer.default_params(**(params or {}))
    train, _ = trainer.load_data()
    batch_size = trainer.batch_size_of(params) if isinstance(train, tuple) else trainer.batch_size
    every = max(1, steps // 25)
    runs: list[dict[str, Any]] = []
    for lr in lrs:
        model = trainer.build_model(params, seed)
        optimizer = trainer.make_optimizer(model, {**params, "lr": lr, **_fixed_rate(trainer, params)})
        generator = torch.Generator().manual_seed(seed)
        model.train()
        losses: list[float] = []
        ema: float | None = None
        status = ""
        while len(losses) < steps and not status:
            for xb, yb in trainer.batches(train, batch_size, generator):
                loss = trainer.loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                value = loss.item()
                losses.append(value)
                if not math.isfinite(value):
                    status = "diverged"
                    break
                ema = value if ema is None else 0.9 * ema + 0.1 * value
                if ema > DIVERGENCE_FACTOR * losses[0]:
                    status = "diverged"
                    break
                if len(losses) == steps:
                    break
        initial = losses[0]
        final = float(np.mean(losses[-10:])) if not status else float("nan")
        if not status:
            drop = 1.0 - final / initial if initial > 0 else 0.0
            status = "diverged" if final > initial else "falls" if drop >= min_drop else "slow"
        runs.append({
            "lr": lr, "status": status, "initial": initial, "final": final if math.isfinite(final) else None,
            "drop": (1.0 - final / initial) if math.isfinite(final) and initial > 0 else None,
            "curve": [[i + 1, v if math.isfinite(v) else None] for i, v in enumerate(losses)
                      if (i + 1) % every == 0 or i == 0 or i == len(losses) - 1],
        })
    lowest_falling = min((r["lr"] for r in runs if r["status"] == "falls"), default=0.0)
    for r in runs:
        # A finite loss that ends a little above the first batch's, at a rate below one where the loss
        # falls, is a flat curve's noise (the rate is too small), not divergence.
        if r["status"] == "diverged" and r["final"] is not None and r["lr"] < lowest_falling:
            r["status"] = "slow"
    first_diverged = min((r["lr"] for r in runs if r["status"] == "diverged"), default=math.inf)
    good = [r for r in runs if r["status"] == "falls" and r["lr"] < first_diverged]
    evidence: dict[str, Any] = {"steps": steps, "min_drop": min_drop, "lrs": lrs, "runs": runs,
                                "diverged_from": None if math.isinf(first_diverged) else first_diverged,
                                "params": _jsonable(params)}
    seconds = time.perf_counter() - start
    if not good:
        slow = max(runs, key=lambda r: r["drop"] if r["drop"] is not None else -math.inf)
        detail = (f"the best, lr {slow['lr']:.3g}, lowered it by {slow['drop']:.0%}" if slow["drop"] is not None
                  else "every run diverged")
        return StepResult(
            "lr_range", FAIL,
            f"no learning rate in [{lrs[0]:.3g}, {lrs[-1]:.3g}] made the loss fall by {min_drop:.0%} within {steps} "
            f"steps ({detail}): widen the learning rates, or check the model and the data",
            evidence, seconds,
        )
    best = min(good, key=lambda r: r["final"])
    low, high = good[0]["lr"], good[-1]["lr"]
    evidence.update(range=[low, high], best=best["lr"])
    above = f"; from {first_diverged:.3g} up the loss diverges" if not math.isinf(first_diverged) else ""
    return StepResult(
        "lr_range", PASS,
        f"the loss falls by {min_drop:.0%} or more within {steps} steps for lr in [{low:.3g}, {high:.3g}] "
        f"(best {best['lr']:.3g}: {best['initial']:.3g} -> {best['final']:.3g}){above}",
        evidence, seconds,
    )


# -- helpers -----------------------------------------------------------------------------------
def _check_count(owner: str, arg: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}({arg}=...) must be an integer >= 1, got {value!r}")


def _check_fraction(owner: str, arg: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{owner}({arg}=...) must be a number in (0, 1), got {value!r}")


def _check_lrs(owner: str, lrs: Sequence[float]) -> list[float]:
    values = list(lrs)
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    ):
        raise ConfigError(f"{owner}(lrs=...) must be positive learning rates, e.g. [1e-4, 1e-3, 1e-2], got {lrs!r}")
    return [float(v) for v in values]


def _names(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _jsonable(params: Mapping[str, ParamValue]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}
