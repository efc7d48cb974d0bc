"""tunelab.torch.HypergradientOptimizer: the learning rate moving along its hypergradient (real
training on the CPU: a quadratic bowl and small MLPs), its state for an exact resume, schedulers on
top, live changes, the Trainer's ``-hd`` optimizers and the recipe's ``adapt_lr``."""

from __future__ import annotations

import copy
import io
import itertools
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

import tunelab
from objectives import torch_blobs, torch_mlp
from tunelab.checkpoints import Checkpoint, CheckpointPolicy
from tunelab.errors import ConfigError
from tunelab.recipe import Budget, run
from tunelab.torch import HypergradientOptimizer, Trainer
from tunelab.torch.hypergradient import CEILING_KEY, DEFAULT_HYPER_LR, DEFAULT_START_FACTOR, TRUST_KEY, WARMUP_KEY
from tunelab.torch.live import apply_to_optimizer

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

BLOBS_TRAIN, BLOBS_VAL = torch_blobs()  # 240 / 120 rows, 3 classes
KINDS = ["sgd", "momentum", "adam", "adamw"]


def inner(kind: str, params: Any, lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def bowl_lrs(kind: str, lr: float, steps: int = 150, **options: Any) -> list[float]:
    """The effective rate after each step of minimising an ill-conditioned quadratic bowl."""
    w = nn.Parameter(torch.tensor([3.0, -2.0, 1.0]))
    curvature = torch.tensor([1.0, 0.5, 0.25])
    opt = HypergradientOptimizer(inner(kind, [w], lr), **options)
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * curvature * w * w).sum().backward()
        opt.step()
        lrs.append(opt.lrs[0])
    return lrs


def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    return x, torch.sin(x @ torch.tensor([[1.0], [-0.5], [0.3], [0.8]]))


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def train_mlp(model: nn.Module, opt: torch.optim.Optimizer, steps: int, start: int = 0,
              after_step: Callable[[], None] | None = None) -> list[list[float]]:
    """``steps`` minibatch steps (batch ``start + i`` of a fixed order); each step's ``lrs``."""
    x, y = regression()
    lrs = []
    for i in range(start, start + steps):
        idx = torch.arange(32) + (i * 32) % 224
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if after_step is not None:
            after_step()
        lrs.append(opt.lrs if isinstance(opt, HypergradientOptimizer) else [g["lr"] for g in opt.param_groups])
    return lrs


# -- the rate moves the right way -------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_the_rate_rises_from_a_far_too_small_start(kind: str) -> None:
    lrs = bowl_lrs(kind, 1e-5, hyper_lr=0.1)
    assert lrs[-1] > 1e-5 * 100  # over 2 decades up in 150 steps
    assert all(b >= a for a, b in itertools.pairwise(lrs[:40]))  # agreeing steps only raise it


@pytest.mark.parametrize(("kind", "lr", "below"), [
    ("sgd", 3.5, 2.0),  # plain SGD diverges above 2 / the largest curvature (1): it comes back under it
    ("momentum", 1.5, 0.5), ("adam", 2.0, 1.0), ("adamw", 2.0, 1.0),
])
def test_the_rate_falls_from_a_far_too_large_start(kind: str, lr: float, below: float) -> None:
    lrs = bowl_lrs(kind, lr, hyper_lr=0.1)
    assert lrs[-1] < below
    assert all(v > 0 and math.isfinite(v) for v in lrs)


@pytest.mark.parametrize("kind", KINDS)
def test_an_mlp_trained_from_a_tiny_rate_ends_with_a_lower_loss_than_the_fixed_rate(kind: str) -> None:
    x, y = regression()
    losses = []
    for wrap in (False, True):
        model = mlp()
        opt = inner(kind, model.parameters(), 1e-4)
        train_mlp(model, HypergradientOptimizer(opt) if wrap else opt, 200)
        losses.append(float(((model(x) - y) ** 2).mean().detach()))
    assert losses[1] < 0.5 * losses[0]


def test_the_rate_stays_positive_and_within_its_bounds() -> None:
    for start in (1e-5, 1e-3, 5.0):
        lrs = bowl_lrs("sgd", start, hyper_lr=0.5, lr_bounds=(1e-4, 1e-2))
        assert all(1e-4 <= v <= 1e-2 for v in lrs)
    rising = bowl_lrs("sgd", 1e-3, hyper_lr=0.5, lr_bounds=(1e-4, 1e-2))
    assert rising[-1] == pytest.approx(1e-2)
    opt = HypergradientOptimizer(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1.0), lr_bounds=(1e-4, 1e-2))
    assert opt.lrs == [pytest.approx(1e-2)] and opt.param_groups[0]["lr"] == 1.0  # clamped at once


def test_the_first_step_is_the_wrapped_optimizers_own() -> None:
    model_a, model_b = mlp(), mlp()
    plain = torch.optim.Adam(model_a.parameters(), lr=1e-3)
    wrapped = HypergradientOptimizer(torch.optim.Adam(model_b.parameters(), lr=1e-3), start_factor=1.0)
    train_mlp(model_a, plain, 1)
    assert train_mlp(model_b, wrapped, 1) == [[1e-3]]  # no previous direction yet: the rate has not moved
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(wrapped.state_dict()["hypergradient"]["prev"]) == 4
    assert all(set(wrapped.state[p]) == {"step", "exp_avg", "exp_avg_sq"} for p in model_b.parameters())


def test_a_parameter_without_a_gradient_at_first_joins_adams_state_later() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3))
    model[2].requires_grad_(False)  # the head gets no gradient in the first steps
    train_mlp(model, opt, 3)
    model[2].requires_grad_(True)
    train_mlp(model, opt, 3, start=3)
    assert int(opt.state[model[2].weight]["step"]) == 3


def test_channels_last_weights_and_replaced_parameter_data_are_followed() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3).to(memory_format=torch.channels_last)  # a weight that is not contiguous
    assert not conv.weight.is_contiguous()
    x = torch.randn(8, 2, 6, 6)
    opt = HypergradientOptimizer(torch.optim.SGD(conv.parameters(), lr=1e-4), start_factor=1.0)
    for i in range(12):
        if i == 6:
            conv.bias.data = conv.bias.data.clone()  # a new tensor under the same parameter
        opt.zero_grad()
        conv(x).pow(2).mean().backward()
        opt.step()
    assert opt.lrs[0] > 1e-4 * math.exp(0.1 * 5)  # it kept rising: the directions were measured


def test_the_first_steps_take_start_factor_times_lr_and_drift_pushes_the_rate_up() -> None:
    w = nn.Parameter(torch.tensor([1.0]))
    opt = HypergradientOptimizer(torch.optim.SGD([w], lr=0.1))
    assert opt.lrs == [pytest.approx(0.1 * DEFAULT_START_FACTOR)] and opt.param_groups[0]["lr"] == 0.1
    opt.zero_grad()
    (w * w).sum().backward()  # type: ignore[no-untyped-call]
    opt.step()
    assert float(w.detach()) == pytest.approx(1.0 - 0.1 * DEFAULT_START_FACTOR * 2)
    # A cosine of 0 (orthogonal steps): only the drift moves the rate.
    calm, drifting = (bowl_lrs("sgd", 1e-3, steps=20, drift=d, start_factor=1.0) for d in (0.0, 0.5))
    assert drifting[-1] > calm[-1]
    with pytest.raises(ConfigError, match=r"start_factor=\.\.\.\) must be a positive number \(1\.0: the first"):
        HypergradientOptimizer(sgd(), start_factor=0.0)
    with pytest.raises(ConfigError, match=r"drift=\.\.\.\) must be a number in \(-1, 1\)"):
        HypergradientOptimizer(sgd(), drift=1.5)


def signed_steps(signs: list[float], lr: float = 0.01, opt: HypergradientOptimizer | None = None,
                 w: nn.Parameter | None = None) -> tuple[list[float], HypergradientOptimizer, nn.Parameter]:
    """Plain SGD on a linear loss whose gradient at step ``i`` is ``signs[i]`` (0: the unit vector
    e2, else that multiple of e1): the cosine of consecutive steps is exactly 1 where e1 repeats, 0
    where they alternate between e1 and e2, -1 where e1 flips sign. The effective rate after each step."""
    w = w if w is not None else nn.Parameter(torch.zeros(2))
    opt = opt if opt is not None else HypergradientOptimizer(torch.optim.SGD([w], lr=lr))
    lrs = []
    for sign in signs:
        opt.zero_grad()
        (w[1] if sign == 0 else sign * w[0]).backward()  # type: ignore[no-untyped-call]
        opt.step()
        lrs.append(opt.lrs[0])
    return lrs, opt, w


WARM_UP = math.ceil(math.log(1 / DEFAULT_START_FACTOR) / DEFAULT_HYPER_LR)  # 24 steps after the first
CEILING = round(2 * math.log(1 / DEFAULT_START_FACTOR) / DEFAULT_HYPER_LR)  # 46: the factor at most 1 until then


def test_the_warm_up_climbs_back_to_lr_at_the_rules_top_speed_whatever_the_cosine() -> None:
    """Orthogonal steps (cosine 0: no sign of an overshoot, nor of agreement): the warm-up multiplies
    the factor by exp(hyper_lr) a step and ends at 1, the rate set; the rule alone (the drift) would
    have left it near a tenth of it."""
    lrs, opt, _ = signed_steps([1.0, 0.0] * 15)
    assert lrs[0] == pytest.approx(0.01 * DEFAULT_START_FACTOR)  # no previous step: no cosine yet
    assert lrs[1:WARM_UP] == pytest.approx([0.01 * DEFAULT_START_FACTOR * math.exp(DEFAULT_HYPER_LR * k)
                                            for k in range(1, WARM_UP)])
    assert lrs[WARM_UP] == 0.01 and opt.param_groups[0][WARMUP_KEY] is None  # back at lr: the warm-up ended
    assert opt.param_groups[0][CEILING_KEY] == [CEILING - WARM_UP - (len(lrs) - 1 - WARM_UP), 1.0]
    assert lrs[WARM_UP:] == [0.01] * (len(lrs) - WARM_UP)  # the drift alone would raise it: the ceiling holds it


def test_after_the_warm_up_agreeing_steps_cannot_raise_the_rate_past_lr_until_the_ceiling_lifts() -> None:
    """Steps that all agree (cosine 1, as on a plateau): the warm-up is back at lr after WARM_UP
    steps; the rule would then raise the rate at once, the ceiling keeps the factor at 1 until step
    CEILING (twice the warm-up), and only then does the rate climb on."""
    lrs, opt, _ = signed_steps([1.0] * (CEILING + 4))
    assert lrs[1:WARM_UP] == pytest.approx([0.01 * DEFAULT_START_FACTOR * math.exp(DEFAULT_HYPER_LR * k)
                                            for k in range(1, WARM_UP)])
    assert lrs[WARM_UP:CEILING + 1] == [0.01] * (CEILING + 1 - WARM_UP)  # held at lr
    assert opt.param_groups[0][CEILING_KEY] is None  # lifted
    step = math.exp(DEFAULT_HYPER_LR * (1 + opt.drift))
    assert lrs[CEILING + 1:] == pytest.approx([0.01 * step ** k for k in range(1, 4)])  # the rule, free
    # Without a warm-up (start_factor 1, the paper's rule) there is no ceiling either.
    w = nn.Parameter(torch.zeros(2))
    free, opt, _ = signed_steps([1.0] * 4, opt=HypergradientOptimizer(torch.optim.SGD([w], lr=0.01), start_factor=1.0),
                                w=w)
    assert opt.param_groups[0][WARMUP_KEY] is None and opt.param_groups[0][CEILING_KEY] is None
    assert free == pytest.approx([0.01] + [0.01 * step ** k for k in range(1, 4)])


def test_an_overshoot_ends_the_warm_up_where_it_is_and_that_rate_is_the_ceiling() -> None:
    """An overshoot ends the warm-up below lr: the rule takes over, and until step CEILING agreeing
    steps cannot raise the rate past the one that overshot."""
    signs = [1.0, 1.0, 1.0, -1.0, 1.0, -1.0] + [1.0] * (CEILING + 2)
    lrs, opt, _ = signed_steps(signs[:5])
    low = 0.01 * DEFAULT_START_FACTOR
    # One step back after two agreeing ones leaves the cosines' running average positive: still warming.
    assert lrs[:4] == pytest.approx([low * math.exp(0.1 * k) for k in range(4)])
    assert lrs[4] == lrs[3] and opt.param_groups[0][WARMUP_KEY] is None  # the second turned it negative
    top = opt.param_groups[0]["hd_scale"]
    assert opt.param_groups[0][CEILING_KEY] == [CEILING - 4, top] and top < 0.2
    lrs, opt, _ = signed_steps(signs)
    assert lrs[5] == pytest.approx(lrs[4] * math.exp(DEFAULT_HYPER_LR * (-1 + opt.drift)))
    # From there the rule: agreeing steps raise the rate back to the one that overshot, and no further.
    assert max(lrs[4:CEILING + 1]) == lrs[4] == lrs[CEILING] and lrs[5] < lrs[4]
    assert opt.param_groups[0][CEILING_KEY] is None
    assert lrs[CEILING + 1] == pytest.approx(lrs[4] * math.exp(DEFAULT_HYPER_LR * (1 + opt.drift)))


NOISE = [1.0, 1.0, -1.0, 0.0]  # cosines 1, -1, 0, 0 in turn: a flat hypergradient, mean 0 (+ drift), sd 0.7


def test_after_a_clean_warm_up_a_flat_noisy_hypergradient_leaves_the_rate_at_lr() -> None:
    """Back at lr without an overshoot, the start is trusted: cosines that are noise around 0 (plus the
    drift: a mean of 0.025 within 3 standard errors of 0) do not move the rate, where the rule alone
    would have raised it by exp(hyper_lr * drift) a step (x 1.9 over these 250 steps after the ceiling)."""
    lrs, opt, _ = signed_steps([1.0] * WARM_UP + NOISE * 75)
    assert lrs[WARM_UP:] == [0.01] * (len(lrs) - WARM_UP)
    group = opt.param_groups[0]
    assert group[WARMUP_KEY] is None and group[CEILING_KEY] is None and group[TRUST_KEY] is not None
    # evidence=0: every step moves the rate, as the rule alone does
    w = nn.Parameter(torch.zeros(2))
    free, _, _ = signed_steps([1.0] * WARM_UP + NOISE * 75, w=w,
                              opt=HypergradientOptimizer(torch.optim.SGD([w], lr=0.01), evidence=0.0))
    assert free[-1] > 0.017


def test_consistent_evidence_moves_a_trusted_rate_and_out_of_the_band_every_step_moves_it() -> None:
    """Steps that agree after the ceiling are evidence: the rate climbs from lr (after the one step
    that has no spread yet) and, once it has left the band (a factor ``trust`` from lr), the trust
    ends and the rule alone moves it, noise included."""
    lrs, opt, _ = signed_steps([1.0] * (CEILING + 5))
    step = math.exp(DEFAULT_HYPER_LR * (1 + opt.drift))
    assert lrs[CEILING + 1:] == pytest.approx([0.01 * step ** k for k in range(1, 5)])
    assert opt.param_groups[0][TRUST_KEY] is not None  # still within a factor 2 of lr
    lrs, opt, w = signed_steps([1.0] * (CEILING + 30))
    assert lrs[-1] > 0.02 and opt.param_groups[0][TRUST_KEY] is None  # left the band: trust ended
    noisy, _, _ = signed_steps(NOISE * 10, opt=opt, w=w)
    assert len(set(noisy)) > 1  # the noise moves it now


def test_a_warm_up_ended_by_an_overshoot_leaves_the_start_untrusted() -> None:
    """An overshoot in the warm-up shows the rate set to be too high: every step moves the rate after
    it, so the slow slide on weak evidence can bring it down."""
    lrs, opt, _ = signed_steps([1.0, 1.0, 1.0, -1.0, 1.0] + NOISE * 20)
    assert opt.param_groups[0][TRUST_KEY] is None and len(set(lrs[5:])) > 5


def test_a_resume_while_the_start_is_trusted_goes_on_bit_for_bit() -> None:
    signs = [1.0] * WARM_UP + NOISE * 20 + [1.0] * 20
    reference, _, _ = signed_steps(signs)
    at = WARM_UP + 70
    _, opt, w = signed_steps(signs[:at])
    buffer = io.BytesIO()
    torch.save({"w": w.detach().clone(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved["opt"]["param_groups"][0][TRUST_KEY][2] > 0  # the trust's moments travel in the state dict
    w2 = nn.Parameter(saved["w"])
    resumed = HypergradientOptimizer(torch.optim.SGD([w2], lr=0.5), start_factor=0.5)
    resumed.load_state_dict(saved["opt"])
    assert signed_steps(signs[at:], opt=resumed, w=w2)[0] == reference[at:]
    assert reference[-1] > reference[at]  # and the evidence at the end did move it


@pytest.mark.parametrize("at", [7, 30])  # in the warm-up; under the ceiling after it
def test_a_resume_in_the_warm_up_or_under_the_ceiling_goes_on_bit_for_bit(at: int) -> None:
    signs = [1.0, 1.0, 0.0] * 20
    reference, _, _ = signed_steps(signs)
    _, opt, w = signed_steps(signs[:at])
    buffer = io.BytesIO()
    torch.save({"w": w.detach().clone(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    group = saved["opt"]["param_groups"][0]
    assert (group[WARMUP_KEY] is not None) == (at < WARM_UP) and (group[CEILING_KEY] is not None) == (at >= WARM_UP)
    w2 = nn.Parameter(saved["w"])
    resumed = HypergradientOptimizer(torch.optim.SGD([w2], lr=0.5), start_factor=0.5)
    resumed.load_state_dict(saved["opt"])
    assert signed_steps(signs[at:], opt=resumed, w=w2)[0] == reference[at:]


@pytest.mark.parametrize("at", [5, 30, 60])  # in the warm-up; under the ceiling after it; trusted after that
@pytest.mark.parametrize("how", ["set_lr", "apply_to_optimizer"])  # the latter: tunelab set, the Trainer, Lightning
def test_a_live_lr_ends_the_warm_up_and_the_ceiling(how: str, at: int) -> None:
    _, opt, w = signed_steps([1.0, 0.0, 1.0] * (at // 3) if at >= 30 else [1.0] * at)  # the last step along e1
    group = opt.param_groups[0]
    assert (group[WARMUP_KEY] is not None) == (at < WARM_UP)
    assert (group[CEILING_KEY] is not None) == (WARM_UP <= at < CEILING)
    assert (group[TRUST_KEY] is not None) == (at >= WARM_UP)
    if how == "set_lr":  # a live change: the adaptation starts again from it, with no warm-up, no ceiling
        opt.set_lr(0.02)
    else:
        apply_to_optimizer(opt, None, {"lr": 0.02})
    lrs, _, _ = signed_steps([1.0], opt=opt, w=w)
    assert opt.param_groups[0][WARMUP_KEY] is None and opt.param_groups[0][CEILING_KEY] is None
    assert opt.param_groups[0][TRUST_KEY] is None  # no trust either: the first cosine moves the rate
    assert lrs == [pytest.approx(0.02 * math.exp(0.1 * (1 + opt.drift)))]


def test_a_closure_is_evaluated_and_its_loss_returned() -> None:
    w = nn.Parameter(torch.tensor([2.0]))
    opt = HypergradientOptimizer(torch.optim.SGD([w], lr=0.1), start_factor=1.0)

    def closure() -> float:
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return float(loss.detach())

    assert opt.step(closure) == 4.0 and float(w.detach()) == pytest.approx(1.6)


class MeasuredSGD(torch.optim.SGD):
    """SGD under another name: the wrapper measures its direction (the parameters' change) instead of
    reading it from SGD's state, a reference for the state-based directions."""


@pytest.mark.parametrize("options", [
    {}, {"momentum": 0.9}, {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01}, {"weight_decay": 0.01},
], ids=["plain", "momentum", "momentum-dampening-decay", "decay"])
def test_sgds_direction_from_its_state_agrees_with_the_measured_one(options: dict[str, float]) -> None:
    runs = []
    for kind in (torch.optim.SGD, MeasuredSGD):
        model = mlp()
        opt = HypergradientOptimizer(kind(model.parameters(), lr=1e-3, **options), start_factor=1.0)
        lrs = train_mlp(model, opt, 8)
        model[2].requires_grad_(False)  # the head gets no gradient (it does not move) for a while
        lrs += train_mlp(model, opt, 6, start=8)
        model[2].requires_grad_(True)
        lrs += train_mlp(model, opt, 6, start=14)
        opt.param_groups[0]["momentum"] = 0.0  # live changes: momentum off, then on again
        lrs += train_mlp(model, opt, 6, start=20)
        opt.param_groups[0]["momentum"] = 0.9
        lrs += train_mlp(model, opt, 6, start=26)
        runs.append((model, [v for (v,) in lrs]))
    (model, lrs), (reference, reference_lrs) = runs
    assert lrs[-1] > 1e-3 * 2 and len(set(lrs)) == len(lrs)  # it adapted at every step
    assert lrs == pytest.approx(reference_lrs, rel=1e-4)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_step_hooks_run_and_the_profiler_sees_the_step() -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    model = mlp()
    opt = HypergradientOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3))
    seen: list[str] = []
    handles = [opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(f"pre {o is opt} {len(args)}")),
               opt.register_step_post_hook(lambda o, args, kwargs: seen.append(f"post {o is opt}")),
               register_optimizer_step_pre_hook(lambda o, args, kwargs: seen.append(f"global pre {o is opt}")),
               register_optimizer_step_post_hook(lambda o, args, kwargs: seen.append(f"global post {o is opt}"))]
    try:
        train_mlp(model, opt, 1)
    finally:
        for handle in handles:
            handle.remove()
    # the wrapped Adam's own step runs the global hooks too (with itself)
    assert seen == ["global pre True", "pre True 1", "global pre False", "global post False", "post True",
                    "global post True"]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_mlp(model, opt, 1)
    names = {event.name for event in prof.events()}
    assert {"Optimizer.step#HypergradientOptimizer.step", "Optimizer.step#Adam.step"} <= names
    train_mlp(model, opt, 1)
    assert len(seen) == 6  # removed


def flat(tensors: Any) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


NAIVE_KINDS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05),
    "sgd-decay": lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.01),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9),
    "momentum-dampening-decay": lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.5, dampening=0.3,
                                                            weight_decay=0.01),
    "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("kind", NAIVE_KINDS)
def test_the_rate_moves_by_the_cosine_of_the_gradient_and_the_last_step_computed_naively(kind: str) -> None:
    """Each step multiplies the factor by exp(hyper_lr * (cos + drift)), cos that of the new gradient
    and the previous step's change of the parameters, here computed from scratch in float64 (no
    warm-up: start_factor 1)."""
    model = mlp()
    opt = HypergradientOptimizer(NAIVE_KINDS[kind](model.parameters()), start_factor=1.0)
    x, y = regression()
    previous_step: torch.Tensor | None = None
    cosines, naive = [], []
    for i in range(40):
        idx = torch.arange(32) + (i * 32) % 224
        opt.zero_grad()
        ((model(x[idx]) - y[idx]) ** 2).mean().backward()  # type: ignore[no-untyped-call]
        before, scale = flat(model.parameters()), opt.param_groups[0]["hd_scale"]
        gradient = flat(p.grad for p in model.parameters())  # type: ignore[misc]
        opt.step()
        factor = opt.param_groups[0]["hd_scale"] / scale
        if previous_step is None:
            assert factor == 1.0  # no previous step: the rate has not moved
        else:
            naive.append(float(-gradient @ previous_step / (gradient.norm() * previous_step.norm())))
            cosines.append(math.log(factor) / opt.hyper_lr - opt.drift)
        previous_step = flat(model.parameters()) - before
    assert cosines == pytest.approx(naive, abs=2e-3)
    assert max(naive) > 0.3 and min(naive) < 0.3  # the steps agreed and turned back: a real test


# -- the gradients in the flat buffer ----------------------------------------------------------
FLAT_KINDS = ["momentum", "adam", "adamw"]


def usage_run(kind: str, usage: str, flat_grads: bool) -> tuple[list[list[float]], list[torch.Tensor], list[Any]]:
    """30 steps of ``kind`` used as ``usage`` says; each step's rates, the parameters at the end and
    the wrapped optimizer's per-parameter step counts (Adam) or momentum buffers."""
    model = mlp()
    opt = HypergradientOptimizer(inner(kind, model.parameters(), 0.01), flat_grads=flat_grads)
    x, y = regression()
    lrs = []
    if usage == "first layer frozen, clipped":
        model[0].requires_grad_(False)  # never a gradient: the wrapped optimizer must skip it
    for i in range(30):
        frozen = usage.startswith("head frozen") and 10 <= i < 14  # the head gets no gradient for 4 steps
        model[2].requires_grad_(not frozen)
        if usage == "biases unused in turn":  # one gets a new gradient while the other gets none (two heads in turn)
            model[0].bias.requires_grad_(i % 2 == 1)
            model[2].bias.requires_grad_(i % 2 == 0)
        if usage == "model.zero_grad" or (usage == "sometimes model.zero_grad" and i % 3 == 0):
            model.zero_grad()
        else:
            opt.zero_grad(set_to_none=usage != "keep zeros")
        if usage == "grad data replaced" and i % 4 == 2:  # as Module.to() converts them: same tensor, new storage
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.data = p.grad.data.clone()
        for part in range(2 if "micro-batch" in usage else 1):
            if usage == "head in one micro-batch":
                model[2].requires_grad_(part == 1)
            idx = torch.arange(16) + (i * 32 + part * 16) % 224
            ((model(x[idx]) - y[idx]) ** 2).mean().backward()  # type: ignore[no-untyped-call]
        if usage.endswith("clipped"):
            nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        if usage == "replaced":
            for p in model.parameters():
                p.grad = p.grad * 0.5  # type: ignore[operator]
        opt.step()
        lrs.append(opt.lrs)
    state = [{k: v for k, v in opt.state[p].items()} for p in model.parameters()]
    return lrs, [p.detach().clone() for p in model.parameters()], state


USAGES = ["wrapper", "keep zeros", "model.zero_grad", "sometimes model.zero_grad", "two micro-batches", "clipped",
          "replaced", "grad data replaced", "head frozen", "head frozen, clipped", "first layer frozen, clipped",
          "head in one micro-batch", "biases unused in turn"]


@pytest.mark.parametrize("usage", USAGES)
@pytest.mark.parametrize("kind", FLAT_KINDS)
def test_gradients_in_the_flat_buffer_step_bit_for_bit_as_copied_ones(kind: str, usage: str) -> None:
    """``flat_grads`` (autograd accumulates into the wrapper's buffer) against the copy of the
    gradients (``flat_grads=False``: the wrapper before it, whose ``zero_grad`` is the wrapped
    optimizer's): the same rates and parameters bit for bit, however the gradients are zeroed,
    accumulated, clipped or replaced, and with a parameter that gets no gradient for a while."""
    flat_lrs, flat_params, flat_state = usage_run(kind, usage, flat_grads=True)
    copy_lrs, copy_params, copy_state = usage_run(kind, usage, flat_grads=False)
    assert flat_lrs == copy_lrs
    assert len({round(lr[0], 12) for lr in flat_lrs}) > 20  # the rate moved: a real comparison
    for a, b in zip(flat_params, copy_params, strict=True):
        assert torch.equal(a, b)
    if usage == "first layer frozen, clipped":
        assert torch.equal(flat_params[0], mlp().state_dict()["0.weight"])  # never stepped
    for a, b in zip(flat_state, copy_state, strict=True):  # Adam's steps: a frozen parameter was skipped
        assert a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


@pytest.mark.parametrize("kind", FLAT_KINDS)
def test_after_the_first_step_the_gradients_accumulate_in_one_flat_buffer(kind: str) -> None:
    model = mlp()
    opt = HypergradientOptimizer(inner(kind, model.parameters(), 0.01))
    train_mlp(model, opt, 2)
    opt.zero_grad()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and not g.any() for g in grads)  # zeros, not None
    assert len({g.untyped_storage().data_ptr() for g in grads}) == 1  # type: ignore[union-attr]
    x, y = regression()
    ((model(x) - y) ** 2).mean().backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))  # accumulated in place
    assert all(g.any() for g in grads)  # type: ignore[union-attr]


def test_a_parameter_without_a_gradient_has_none_at_the_step_as_after_torchs_zero_grad() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3))
    train_mlp(model, opt, 3)
    model[2].requires_grad_(False)
    seen: list[Any] = []
    opt.optimizer.register_step_pre_hook(lambda o, a, k: seen.append(model[2].weight.grad))
    train_mlp(model, opt, 1, start=3)
    assert seen == [None]  # Adam skipped it
    assert int(opt.state[model[2].weight]["step"]) == 3
    opt.zero_grad(set_to_none=False)
    assert model[2].weight.grad is None and model[0].weight.grad is not None  # as torch's zero_grad


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_plain_sgd_group_beside_a_momentum_one_is_zeroed_as_by_torch(set_to_none: bool) -> None:
    runs = []
    for flat_grads in (True, False):
        model = mlp()
        sgd = torch.optim.SGD([{"params": model[0].parameters(), "momentum": 0.9},
                               {"params": model[2].parameters()}], lr=0.01)  # the head: plain SGD
        opt = HypergradientOptimizer(sgd, flat_grads=flat_grads)
        train_mlp(model, opt, 12)
        opt.zero_grad(set_to_none=set_to_none)
        head = [p.grad for p in model[2].parameters()]
        assert all(g is None for g in head) if set_to_none else all(not g.any() for g in head)  # type: ignore[union-attr]
        assert (model[0].weight.grad is None) == (set_to_none and not flat_grads)
        runs.append((train_mlp(model, opt, 12, start=12), [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0] and all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_plain_sgd_and_flat_grads_false_keep_torchs_zero_grad() -> None:
    for flat_grads, kind in ((True, "sgd"), (False, "momentum")):  # plain SGD: its direction is the gradient
        model = mlp()
        opt = HypergradientOptimizer(inner(kind, model.parameters(), 0.01), flat_grads=flat_grads)
        train_mlp(model, opt, 3)
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())


class CountingSGD(torch.optim.SGD):
    """SGD whose own step counts its calls."""

    calls = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        CountingSGD.calls += 1
        return super().step(closure)


def inner_variant_run(variant: str) -> tuple[list[list[float]], list[torch.Tensor]]:
    """12 steps of momentum SGD, wrapped, with the wrapped SGD bare, with its own step hooks or
    with its step patched by a scheduler on it; each step's rate and the parameters at the end."""
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    seen: list[str] = []
    if variant == "hooked":  # the wrapped optimizer's own hooks, with itself as the optimizer
        sgd.register_step_pre_hook(lambda o, args, kwargs: seen.append(f"pre {o is sgd}"))
        sgd.register_step_post_hook(lambda o, args, kwargs: seen.append(f"post {o is sgd}"))
    scheduler = torch.optim.lr_scheduler.StepLR(sgd, step_size=1000) if variant == "patched" else None
    assert ("step" in vars(sgd)) == (variant == "patched")
    opt = HypergradientOptimizer(sgd)
    lrs = train_mlp(model, opt, 12)
    if variant == "bare":  # torch's profiler range and hooks around SGD's step were skipped
        assert opt._inner_fns[0] is torch.optim.SGD.step.__wrapped__.__wrapped__  # type: ignore[attr-defined]
    assert seen == (["pre True", "post True"] * 12 if variant == "hooked" else [])
    if scheduler is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()"
            scheduler.step()
    return lrs, [p.detach().clone() for p in model.parameters()]


def test_the_wrapped_step_skips_only_torchs_idle_layers_and_keeps_its_hooks_and_patches() -> None:
    bare_lrs, bare_params = inner_variant_run("bare")
    for variant in ("hooked", "patched"):  # the same steps, bit for bit
        lrs, params = inner_variant_run(variant)
        assert lrs == bare_lrs
        assert all(torch.equal(a, b) for a, b in zip(params, bare_params, strict=True))
    model = mlp()
    CountingSGD.calls = 0
    train_mlp(model, HypergradientOptimizer(CountingSGD(model.parameters(), lr=0.02)), 5)
    assert CountingSGD.calls == 5  # a subclass's own step runs


# -- groups -----------------------------------------------------------------------------------
def two_groups(per_group: bool) -> tuple[nn.Module, HypergradientOptimizer]:
    model = mlp()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 1e-2}]
    return model, HypergradientOptimizer(torch.optim.SGD(groups, lr=1e-3, momentum=0.9), per_group=per_group,
                                         start_factor=1.0)  # no warm-up: its ceiling would hold both at 1


def test_per_group_adapts_each_group_by_its_own_factor_and_false_by_one() -> None:
    model, own = two_groups(per_group=True)
    train_mlp(model, own, 30)
    scales = [g["hd_scale"] for g in own.param_groups]
    assert scales[0] != scales[1] and own.lrs == [1e-3 * scales[0], 1e-2 * scales[1]]
    model, shared = two_groups(per_group=False)
    train_mlp(model, shared, 30)
    scales = [g["hd_scale"] for g in shared.param_groups]
    assert scales[0] == scales[1] != 1.0
    assert shared.lrs == pytest.approx([1e-3 * scales[0], 1e-2 * scales[0]])


def _groups_run(kind: str, hypergradient: bool, zero: str) -> tuple[list[list[float]], list[torch.Tensor]]:
    """14 steps over four param groups of different sizes: one with a frozen weight (requires_grad
    False), one all frozen, a head, and a side layer unused every third step (its gradients None);
    clip_grad_norm_ between backward and step. With ``hypergradient`` False, the reference: the plain
    optimizer stepped at each group's rate adapted by hand (the cosine of the group's new gradient,
    a missing one 0, and its parameters' last change, in float64)."""
    torch.manual_seed(0)
    m = nn.ModuleDict({"a": nn.Linear(4, 16), "b": nn.Linear(16, 1), "c": nn.Linear(4, 1), "f": nn.Linear(4, 1),
                       "g": nn.Linear(4, 1)})
    m["a"].bias.requires_grad_(False)
    m["f"].requires_grad_(False)
    groups = [{"params": list(m["a"].parameters()), "lr": 0.02}, {"params": list(m["f"].parameters()), "lr": 0.3},
              {"params": [*m["b"].parameters(), *m["g"].parameters()], "lr": 0.005},
              {"params": list(m["c"].parameters()), "lr": 0.01}]
    opt: torch.optim.Optimizer = NAIVE_KINDS[kind](groups)
    if hypergradient:
        opt = HypergradientOptimizer(opt, start_factor=1.0, drift=0.0)
    x, y = regression()
    scales, before, lrs = [1.0] * 4, None, []
    for i in range(14):
        if zero == "model":
            m.zero_grad()
        else:
            opt.zero_grad(set_to_none=zero == "optimizer")
        h = torch.relu(m["a"](x[i * 16:(i + 1) * 16]))
        out = m["b"](h) + m["f"](x[i * 16:(i + 1) * 16]) + m["g"](x[i * 16:(i + 1) * 16])
        if i % 3 != 1:
            out = out + m["c"](x[i * 16:(i + 1) * 16])
        ((out - y[i * 16:(i + 1) * 16]) ** 2).mean().backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(m.parameters(), 0.05)
        if not hypergradient:
            for k, group in enumerate(opt.param_groups):
                if before is not None:
                    g = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).double().reshape(-1)
                                   for p in group["params"]])
                    u = torch.cat([(before[p] - p.detach()).double().reshape(-1) for p in group["params"]])
                    if float(g.norm() * u.norm()) > 0:
                        scales[k] *= math.exp(0.1 * float(g @ u) / float(g.norm() * u.norm()))
            before = {p: p.detach().clone() for group in opt.param_groups for p in group["params"]}
            for group, scale in zip(opt.param_groups, scales, strict=True):
                group["lr"] *= scale
        opt.step()
        if not hypergradient:
            for group, scale in zip(opt.param_groups, scales, strict=True):
                group["lr"] /= scale
            lrs.append([group["lr"] * scale for group, scale in zip(opt.param_groups, scales, strict=True)])
        else:
            lrs.append(opt.lrs)  # type: ignore[attr-defined]
    return lrs, [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("zero", ["optimizer", "keep zeros", "model"])
@pytest.mark.parametrize("kind", ["sgd-decay", "momentum", "adam", "adamw"])
def test_several_groups_with_clipping_and_missing_gradients_step_as_the_reference(kind: str, zero: str) -> None:
    """Each group adapts from its own parameters only and steps as the plain optimizer at that rate,
    with the gradients in the flat buffer: a group whose gradients all went unused at a step got a
    step of zeros before (clip_grad_norm_ raised their versions as accumulating would: Adam and
    momentum moved it, and its rate moved on a direction it should not have had)."""
    got_lrs, got = _groups_run(kind, True, zero)
    want_lrs, want = _groups_run(kind, False, zero)
    assert [lr for row in got_lrs for lr in row] == pytest.approx([lr for row in want_lrs for lr in row], rel=1e-4)
    assert len({round(lr[3], 12) for lr in got_lrs}) >= 4  # the side group's rate moved: a real comparison
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_it_is_a_torch_optimizer_sharing_the_wrapped_ones_groups_and_state() -> None:
    model = mlp()
    sgd = torch.optim.SGD(model[0].parameters(), lr=0.01)
    opt = HypergradientOptimizer(sgd)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is sgd.param_groups and opt.state is sgd.state
    opt.add_param_group({"params": model[2].parameters(), "lr": 0.1})
    assert len(sgd.param_groups) == 2 and opt.param_groups[1]["hd_scale"] == DEFAULT_START_FACTOR
    train_mlp(model, opt, 3)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert "HypergradientOptimizer(SGD" in repr(opt)


# -- state: an exact resume -------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_and_load_state_dict_resume_bit_for_bit(kind: str) -> None:
    model = mlp()
    opt = HypergradientOptimizer(inner(kind, model.parameters(), 1e-3))
    train_mlp(model, opt, 10)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    reference = train_mlp(model, opt, 10, start=10)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copy_model = mlp(seed=1)
    copy_model.load_state_dict(saved["model"])
    resumed_opt = HypergradientOptimizer(inner(kind, copy_model.parameters(), 0.5))  # lr comes from the state
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.param_groups is resumed_opt.optimizer.param_groups
    assert train_mlp(copy_model, resumed_opt, 10, start=10) == reference  # every rate, exactly
    for a, b in zip(model.parameters(), copy_model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_a_resume_after_an_odd_number_of_steps_is_bit_for_bit(kind: str) -> None:
    # Plain SGD's two rows take turns holding the previous gradient; a resumed optimizer put it in
    # the second row whatever the parity, and the matrix product's rounding depends on the row, so
    # after an odd number of steps the rates drifted in the last bits (no warm-up: the cosines count).
    model = mlp()
    opt = HypergradientOptimizer(inner(kind, model.parameters(), 1e-3), start_factor=1.0)
    whole = train_mlp(model, opt, 16)
    for at in (1, 3, 5):
        model = mlp()
        opt = HypergradientOptimizer(inner(kind, model.parameters(), 1e-3), start_factor=1.0)
        train_mlp(model, opt, at)
        saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
        resumed_model = mlp(seed=1)
        resumed_model.load_state_dict(saved["model"])
        resumed_opt = HypergradientOptimizer(inner(kind, resumed_model.parameters(), 0.5), start_factor=1.0)
        resumed_opt.load_state_dict(saved["opt"])
        assert train_mlp(resumed_model, resumed_opt, 16 - at, start=at) == whole[at:], f"resumed after {at} steps"


def test_a_resume_right_after_a_step_without_some_gradients_is_exact_with_momentum() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9))
    train_mlp(model, opt, 5)
    model[2].requires_grad_(False)  # the head has no gradient at the last step before the save
    train_mlp(model, opt, 1, start=5)
    model[2].requires_grad_(True)
    saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    assert saved["opt"]["hypergradient"]["still"] == [2, 3]
    reference = train_mlp(model, opt, 5, start=6)
    copy_model = mlp(seed=1)
    copy_model.load_state_dict(saved["model"])
    resumed = HypergradientOptimizer(torch.optim.SGD(copy_model.parameters(), lr=0.5, momentum=0.9))
    resumed.load_state_dict(saved["opt"])
    assert train_mlp(copy_model, resumed, 5, start=6) == reference


def test_a_plain_optimizers_state_loads_and_the_rate_adapts_from_it() -> None:
    model = mlp()
    plain = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    train_mlp(model, plain, 5)
    opt = HypergradientOptimizer(torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9))
    opt.load_state_dict(copy.deepcopy(plain.state_dict()))
    assert opt.lrs == [1e-3]
    train_mlp(model, opt, 5)
    assert opt.lrs[0] != 1e-3


# -- schedulers and live changes --------------------------------------------------------------
def test_a_lambda_schedule_multiplies_the_adapted_rate() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), start_factor=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    seen: list[tuple[float, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()" warning
        train_mlp(model, opt, 20, after_step=lambda: (schedule.step(), seen.append(
            (opt.param_groups[0]["lr"], opt.param_groups[0]["hd_scale"]))))
    for step, (scheduled, _) in enumerate(seen, start=1):
        assert scheduled == pytest.approx(1e-3 / (1 + step))  # the schedule's own value, untouched
    assert seen[-1][1] > 1.0 and opt.lrs[0] == seen[-1][0] * seen[-1][1]
    assert schedule.get_last_lr() == [seen[-1][0]]


def test_an_exponential_schedule_multiplies_the_adapted_rate_too() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3))
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    train_mlp(model, opt, 10, after_step=schedule.step)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.9 ** 10)
    assert opt.lrs[0] == pytest.approx(1e-3 * 0.9 ** 10 * opt.param_groups[0]["hd_scale"])


def test_a_live_lr_sets_the_rate_and_the_adaptation_starts_again_from_it() -> None:
    model = mlp()
    opt = HypergradientOptimizer(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9), start_factor=1.0)
    train_mlp(model, opt, 20)
    assert opt.lrs[0] > 1e-4
    assert apply_to_optimizer(opt, None, {"lr": 0.003}) == {"lr": 0.003}
    assert opt.lrs == [0.003]
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    train_mlp(model, opt, 5, after_step=schedule.step)
    apply_to_optimizer(opt, schedule, {"lr": 0.01})  # under a schedule: the new base, times its factor
    assert opt.lrs == [0.005] and schedule.base_lrs == [0.01]
    opt.set_lr(0.02)
    assert opt.lrs == [0.02]


# -- errors -----------------------------------------------------------------------------------
def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)


ERRORS: dict[str, tuple[Callable[[], Any], str]] = {
    "hyper_lr-zero": (lambda: HypergradientOptimizer(sgd(), hyper_lr=0.0), r"hyper_lr=\.\.\.\) must be a positive"),
    "hyper_lr-negative": (lambda: HypergradientOptimizer(sgd(), hyper_lr=-0.1), r"hyper_lr=.*such as 0\.1"),
    "hyper_lr-nan": (lambda: HypergradientOptimizer(sgd(), hyper_lr=math.nan), "hyper_lr"),
    "hyper_lr-bool": (lambda: HypergradientOptimizer(sgd(), hyper_lr=True), "hyper_lr"),
    "bounds-reversed": (lambda: HypergradientOptimizer(sgd(), lr_bounds=(1.0, 0.1)), r"lr_bounds=.*0 < low < high"),
    "bounds-zero": (lambda: HypergradientOptimizer(sgd(), lr_bounds=(0.0, 0.1)), "lr_bounds"),
    "bounds-one": (lambda: HypergradientOptimizer(sgd(), lr_bounds=(0.1,)), "lr_bounds"),  # type: ignore[arg-type]
    "per_group": (lambda: HypergradientOptimizer(sgd(), per_group="yes"), "per_group"),  # type: ignore[arg-type]
    "flat_grads": (lambda: HypergradientOptimizer(sgd(), flat_grads=1), "flat_grads"),  # type: ignore[arg-type]
    "evidence": (lambda: HypergradientOptimizer(sgd(), evidence=-1.0), r"evidence=\.\.\.\) must be a number >= 0"),
    "trust": (lambda: HypergradientOptimizer(sgd(), trust=1.0), r"trust=\.\.\.\) must be a number above 1"),
    "not-an-optimizer": (lambda: HypergradientOptimizer(nn.Linear(2, 1)),  # type: ignore[arg-type]
                         r"optimizer=\.\.\.\) must be a torch\.optim\.Optimizer such as .*got Linear"),
    "parameters": (lambda: HypergradientOptimizer(list(nn.Linear(2, 1).parameters())),  # type: ignore[arg-type]
                   "torch.optim.Optimizer"),
    "twice": (lambda: HypergradientOptimizer(HypergradientOptimizer(sgd())), "wrap it once"),
    "set_lr": (lambda: HypergradientOptimizer(sgd()).set_lr(0.0), r"set_lr\(lr=\.\.\.\)"),
    "set_lr-group": (lambda: HypergradientOptimizer(sgd()).set_lr(0.1, group=1), r"set_lr\(group=\.\.\.\).*0 to 0"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_bad_arguments_are_config_errors_naming_the_argument_and_the_fix(case: str) -> None:
    make, needle = ERRORS[case]
    with pytest.raises(ConfigError, match=needle):
        make()


# -- the Trainer ------------------------------------------------------------------------------
def calm_mlp(params: Any) -> nn.Module:
    """The blobs MLP with a small head: its initial loss is near ln 3, as the recipe's check expects."""
    model: nn.Sequential = torch_mlp(params)  # type: ignore[assignment]
    with torch.no_grad():
        model[2].weight.mul_(0.05)
        model[2].bias.zero_()
    return model


def blobs_trainer(optimizer: str, **kw: Any) -> Trainer:
    return Trainer(calm_mlp, train=BLOBS_TRAIN, val=BLOBS_VAL, batch_size=32, device="cpu", optimizer=optimizer,
                   **kw)


@pytest.mark.parametrize("optimizer", ["sgd-hd", "adam-hd", "adamw-hd"])
def test_the_trainer_trains_with_an_hd_optimizer_and_reports_the_lr_curve(optimizer: str) -> None:
    # 8 steps an epoch: the warm-up and its ceiling hold the rate at 1e-4 at most for 23 steps.
    result = blobs_trainer(optimizer).fit({"lr": 1e-4, "hyper_lr": 0.2}, epochs=6, seed=0)
    lrs = [row["lr"] for row in result.history]
    assert len(lrs) == 6 and lrs[-1] > lrs[0] and lrs[-1] > 1e-4  # the adapted rate, each epoch
    fixed = blobs_trainer(optimizer.removesuffix("-hd")).fit({"lr": 1e-4}, epochs=6, seed=0)
    assert {row["lr"] for row in fixed.history} == {1e-4}
    assert result.history[-1]["val_loss"] < fixed.history[-1]["val_loss"]


def test_the_trainer_builds_the_wrapped_optimizer_with_its_hyper_lr() -> None:
    trainer = blobs_trainer("sgd-hd")
    model = trainer.build_model({}, 0)
    opt = trainer.make_optimizer(model, {"lr": 0.01, "momentum": 0.5})
    assert isinstance(opt, HypergradientOptimizer) and isinstance(opt.optimizer, torch.optim.SGD)
    assert opt.hyper_lr == DEFAULT_HYPER_LR and opt.param_groups[0]["momentum"] == 0.5
    assert trainer.make_optimizer(model, {"lr": 0.01, "hyper_lr": 0.3}).hyper_lr == 0.3  # type: ignore[attr-defined]
    assert trainer.live_names(opt)[:3] == ["lr", "momentum", "weight_decay"]
    with pytest.raises(ConfigError, match="parameter hyper_lr must be a positive number"):
        trainer.make_optimizer(model, {"lr": 0.01, "hyper_lr": -1.0})
    capped = trainer.make_optimizer(model, {"lr": 0.01, "lr_max": 0.05})
    assert capped.lr_bounds == (1e-12, 0.05)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"parameter lr_max \(the ceiling of the adapted rate\) must be a number"):
        trainer.make_optimizer(model, {"lr": 0.01, "lr_max": 0.001})
    plain = blobs_trainer("adam").make_optimizer(model, {"lr": 0.01, "optimizer": "adam-hd"})
    assert isinstance(plain, HypergradientOptimizer)  # the parameters may name it too


def test_the_trainer_reports_the_lr_every_eval_every_steps() -> None:
    result = blobs_trainer("adam-hd").fit({"lr": 1e-4}, epochs=2, eval_every=4, seed=0)
    lrs = [row["lr"] for row in result.history]
    assert [row["step"] for row in result.history] == [4, 8, 12, 16]
    assert len(set(lrs)) == 4


def test_resuming_the_trainer_from_a_checkpoint_goes_on_bit_for_bit(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'hd.db'}", artifact_dir=tmp_path / "art", seed=0,
                                 checkpoint_policy=CheckpointPolicy(keep_last=10))
    trainer = blobs_trainer("adamw-hd", schedule="cosine")
    kw: dict[str, Any] = {"epochs": 4, "checkpoint_every": 1, "seed": 3}
    whole = study.ask()
    reference = trainer.fit({"lr": 1e-3}, trial=whole, **kw)
    resumed = trainer.fit({"lr": 1e-3}, trial=study.ask(), resume=Checkpoint(2, whole.checkpoint_dir / "step-2"), **kw)
    assert resumed.history == reference.history  # the lr curve included, exactly
    assert len({row["lr"] for row in reference.history}) == 4
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor)


# -- the recipe -------------------------------------------------------------------------------
def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_the_recipe_with_adapt_lr_trains_the_searches_from_the_range_tests_rate(tmp_path: Path) -> None:
    trainer = blobs_trainer("adam")
    budget = Budget(overfit_batches=2, overfit_steps=100, lr_steps=20, lr_points=4, coarse_trials=3,
                    coarse_epochs=1, refine_trials=2, refine_epochs=2, final_epochs=3)
    result = run(trainer, storage=None, budget=budget, n_workers=1, artifact_dir=tmp_path, console=quiet(),
                 adapt_lr=True, show_progress=False)
    assert result.ok, [s.message for s in result.steps]
    best = result.steps[2].evidence["best"]
    study = result.study
    assert {t.params["lr"] for t in study.trials} == {best}  # every run starts from the range test's choice
    high = result.steps[2].evidence["range"][1]
    assert {t.params.get("lr_max") for t in study.trials} == ({high} if high > best else {None})
    final = max(study.trials, key=lambda t: t.number)
    lrs = study.get_curves(final.number)["lr"][1]
    assert len(set(lrs)) == 3 and all(v != best for v in lrs)  # ... and adapts
    assert study.system_attrs["recipe"]["adapt_lr"] is True
    assert trainer.optimizer == "adam"  # the caller's trainer is unchanged


def test_the_range_test_of_an_hd_trainer_measures_fixed_rates() -> None:
    from tunelab.recipe import lr_range_test
    from tunelab.recipe.search import adaptive

    plain, hd = (lr_range_test(blobs_trainer(o), lrs=[1e-3, 1e-1], steps=12) for o in ("adam", "adam-hd"))
    assert [r["curve"] for r in hd.evidence["runs"]] == [r["curve"] for r in plain.evidence["runs"]]
    assert adaptive(blobs_trainer("adam-hd")).optimizer == "adam-hd"


@pytest.mark.parametrize(("optimizer", "adapt_lr", "needle"), [
    ("rmsprop", True, r"adapt_lr needs a Trainer with optimizer one of \('sgd', 'adam', 'adamw'\)"),
    ("adam", "yes", r"run\(adapt_lr=\.\.\.\) must be True or False"),
])
def test_the_recipe_refuses_adapt_lr_it_cannot_honour(tmp_path: Path, optimizer: str, adapt_lr: Any,
                                                       needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        run(blobs_trainer(optimizer), storage=None, n_workers=1, console=quiet(), adapt_lr=adapt_lr)


def test_the_recipe_command_has_an_adapt_lr_flag() -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    result = CliRunner().invoke(app, ["recipe", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--adapt-lr" in result.output
