"""Tuning the learning rate by gradient: :class:`HypergradientOptimizer` wraps SGD (with or
without momentum), Adam or AdamW and, after every step, moves each param group's learning rate
along its hypergradient (Baydin et al., "Online Learning Rate Adaptation with Hypergradient
Descent", ICLR 2018), in the multiplicative, normalised form.

The hypergradient of the loss with respect to the learning rate is ``-g_t . u_{t-1}``: the new
gradient against the previous update direction (for plain SGD the previous gradient, with
momentum the previous momentum step, for Adam ``m_hat / (sqrt(v_hat) + eps)``). Where
``torch.optim.SGD``'s update is a positive multiple of something it already holds, the direction is
read from it (whose scale cancels in the cosine): the previous gradient (plain SGD, no weight
decay), the momentum buffer (momentum, any dampening and weight decay, no Nesterov), which the
wrapper keeps in its flat buffer so that SGD updates it there. Otherwise (Adam, AdamW, Nesterov,
plain SGD with weight decay, ``per_group=False`` over several groups) it is measured: the
parameters' change over the previous step, ``p_before - p_after``, exact for every optimizer, for
one copy of the parameters and one subtraction. Each group's three dot products come from one
matrix product over a flat buffer of the new gradients and the directions (one host transfer).
The new gradients need no copy into it (``flat_grads``, except with plain SGD): from the first
step on, the wrapper's ``zero_grad`` zeroes the buffer's gradient row in one operation and leaves
each parameter's ``.grad`` as a tensor on it, so autograd accumulates there in place; gradients
that something replaced or set to None (``model.zero_grad()``) are copied as before.
The wrapped optimizer's own ``step`` function is called without torch's profiler range and hooks
layer around it whenever that layer has nothing to do (no hooks, no profiler, no patched ``step``):
on a small MLP on a CPU that layer costs more than the hypergradient's own work.
The rate then moves by the cosine of the two, a scale-free number in [-1, 1]::

    scale_t = scale_{t-1} * exp(hyper_lr * (cos(g_t, u_{t-1}) + drift))

which keeps it positive: consecutive steps that agree (the rate is too small to cross the valley)
raise it, steps that turn back (it overshoots) lower it. Three departures from the paper, all
options: a warm-up (``start_factor``, 0.1), a small ``drift`` (0.025) that counters the
hypergradient's greedy bias toward rates below the best fixed one, and trust in a start the
warm-up found sound (``evidence``, ``trust``); ``start_factor=1.0, drift=0.0`` is the paper's
rule (no warm-up: no trust either).

The warm-up: the factor starts at ``start_factor`` and grows by ``exp(hyper_lr)`` a step (the
rule's top speed: 24 steps from 0.1 to 1) until it is back at 1, the rate you set, or the cosines'
running average (:data:`WARMUP_BETA`) turns negative, an overshoot. Until twice the warm-up's
length (46 steps at the defaults) the rule then runs under a ceiling, the factor where the warm-up
ended (1, or the factor that overshot): agreeing steps on the initial plateau cannot push a start
at the edge of stability past the rate it was warmed up to, or past the rate that just overshot.
So a well-chosen start is back at its own rate early, whatever the hypergradient's greedy bias
(which otherwise stalled the climb: measured, Adam on the digits CNN started at its best fixed rate
stayed at 0.4 times it), and a start at the edge of stability is not damaged before the rule has
seen the network's response.

The trust: a warm-up back at ``lr`` without an overshoot found the start sound, and from there
on a step moves the rate only on evidence: while the running mean of ``cos + drift`` (weight
:data:`TRUST_BETA` on the past, about the last 40 steps) is more than ``evidence`` (3) of its
standard errors from 0, as for independent cosines. Near a good rate the cosines are minibatch
noise (standard deviation about 0.3) with a slightly negative mean that barely depends on the
rate (measured on the digits MLP with SGD: -0.05 to -0.06 at fixed rates 0.022 and 0.1, the
hypergradient's short-horizon bias), so the rule alone slides the rate down as long as the run
lasts (from the best rate 0.1 to 0.03 in 20 epochs); such a mean is not evidence. A rate far too
small (cosines far above 0) or an overshoot (far below) is, and once the rate has moved a factor
``trust`` (2) from ``lr`` either way the trust ends: the start was wrong, and the rule alone
moves the rate from there, as it does after a warm-up ended by an overshoot (which showed the
start too high: there the slow slide on weak evidence is what brings the rate down), without a
warm-up and after a live change of ``lr``.

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
(never inside it: Adam starts a parameter's state when it finds it empty; SGD's momentum buffers
are its own state) and saved under the ``"hypergradient"`` key of
:meth:`~HypergradientOptimizer.state_dict`; the factor, the warm-up and its ceiling are the group
keys ``hd_scale``, ``hd_warmup``, ``hd_ceiling`` and ``hd_trust``. All are in the state dict, so a
checkpoint resumes bit for bit (a live ``lr`` change ends the warm-up, the ceiling and the trust).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.optim.optimizer as _torch_optimizer
from torch.optim.optimizer import _global_optimizer_post_hooks as _global_post_hooks
from torch.optim.optimizer import _global_optimizer_pre_hooks as _global_pre_hooks  # register_optimizer_step_*_hook

from tunelab.errors import ConfigError

_set_grad_enabled: Callable[[bool], None] = torch._C._set_grad_enabled
_grad = operator.attrgetter("grad")
_version = operator.attrgetter("_version")
_data_ptr: Callable[[torch.Tensor], int] = torch.Tensor.data_ptr
_params = operator.itemgetter("params")


def _sgd_settings(group: dict[str, Any]) -> tuple[Any, ...]:
    return group.get("maximize"), group.get("nesterov"), group.get("momentum"), group.get("weight_decay")

_get_buffer = operator.methodcaller("get", "momentum_buffer")

_profiling: Callable[[], bool] = torch.autograd._profiler_enabled  # type: ignore[attr-defined]

_compiling: Callable[[], bool] = torch.compiler.is_compiling


def _torch_wrapper_codes() -> tuple[Any, Any]:
    """The code objects of torch's two layers around an optimizer's ``step``: the profiler range
    and step hooks that ``Optimizer.__init__`` adds (``profile_hook_step``), and the grad-mode
    switch of the built-in optimizers (``_use_grad_for_differentiable``); None where this torch
    has no such layer."""
    def probe(*args: Any, **kwargs: Any) -> None:
        return None

    hook = getattr(torch.optim.Optimizer, "profile_hook_step", None)
    use_grad = getattr(_torch_optimizer, "_use_grad_for_differentiable", None)
    hook_code = getattr(hook(probe), "__code__", None) if callable(hook) else None
    use_grad_code = getattr(use_grad(probe), "__code__", None) if callable(use_grad) else None
    return hook_code, use_grad_code


_HOOK_CODE, _USE_GRAD_CODE = _torch_wrapper_codes()


def _unwrapped_step(step: Any) -> tuple[Any, Any]:
    """``(inner, grad_switched)``: the functions under torch's profiler range and step hooks of an
    optimizer class's ``step``: the optimizer's own step and the same with torch's grad-mode switch
    (for a ``differentiable`` optimizer); ``(None, None)`` where ``step`` is not torch's wrapper."""
    if _HOOK_CODE is None or getattr(step, "__code__", None) is not _HOOK_CODE:
        return None, None
    switched = getattr(step, "__wrapped__", None)
    if switched is None:
        return None, None
    inner = switched
    if _USE_GRAD_CODE is not None and getattr(switched, "__code__", None) is _USE_GRAD_CODE:
        inner = getattr(switched, "__wrapped__", switched)
    return inner, switched

DEFAULT_HYPER_LR = 0.1
"""The default ``hyper_lr``: the rate moves by at most ``exp(0.1)``, about 10%, per step (tuned on
a small MLP on the digits over starts from 1e-5 to 1e-1: 0.05, 0.1, 0.2 and 0.4 tried, 0.1 best;
see ``benchmarks/hypergradient.py``)."""

DEFAULT_START_FACTOR = 0.1
"""The default ``start_factor``: the first steps take a tenth of ``lr``, the warm-up brings the rate
back to ``lr`` in ``ln(10) / hyper_lr`` steps (24 at the default) unless an overshoot ends it
earlier, and the factor stays at most where the warm-up ended until twice that (46 steps)."""
WARMUP_BETA = 0.8
"""The warm-up ends at an overshoot: where the running average of the cosines (weight ``0.8`` on
the past, about the last 5 steps) is negative."""
DEFAULT_DRIFT = 0.025
"""The default ``drift``: the rate settles where steps that turn back are slightly more frequent
than steps that agree (0 is the paper's rule; 0.025 did better on the benchmark's 4 cases, 0.05 was
worse with Adam on the CNN started at 0.1 and 0.1 worse everywhere)."""
DEFAULT_EVIDENCE = 3.0
"""The default ``evidence``: while the start is trusted, the rate moves only while the running mean
of ``cos + drift`` is more than 3 of its standard errors from 0."""
DEFAULT_TRUST = 2.0
"""The default ``trust``: the start is trusted (moves need ``evidence``) while the rate stays within
a factor 2 of it, either way."""
TRUST_BETA = 0.95
"""The weight on the past of the running mean and variance of ``cos + drift`` that ``evidence``
judges (about the last 40 steps)."""

SCALE_KEY = "hd_scale"
"""The param-group key of the adapted factor (the effective rate is ``lr * hd_scale``)."""
WARMUP_KEY = "hd_warmup"
"""The param-group key of the warm-up's state: ``[average, ceiling_steps]``, the running average of
the cosines so far and the steps left until the factor may pass 1; None once the warm-up has ended
(or where it never began: ``start_factor >= 1``, a live change of ``lr``, a plain optimizer's
state)."""
TRUST_KEY = "hd_trust"
"""The param-group key of the trust in the start: ``[mean, mean of squares, weight]``, the running
moments of ``cos + drift`` since the trust began, exponentially weighted (:data:`TRUST_BETA`),
``weight`` the sum of the weights (the moments are ``mean / weight`` and ``mean of squares /
weight``); None: not trusted, every step moves the rate: in the warm-up, after one ended by an
overshoot, without one (``start_factor >= 1``), after a live change of ``lr``, once the rate left
the band."""
CEILING_KEY = "hd_ceiling"
"""The param-group key of the ceiling after the warm-up: ``[steps, ceiling]``, the steps left with
the factor at most ``ceiling`` (where the warm-up ended: 1, or the factor at the overshoot that
ended it); None: no ceiling."""
STATE_KEY = "hypergradient"
"""The key of :meth:`HypergradientOptimizer.state_dict` holding ``{"prev": {index: direction},
"still": [index, ...], "flipped": [index, ...]}``: each parameter's previous update direction (up
to a positive factor common to its group) by its index in the param groups (torch's numbering),
none where it is SGD's momentum buffer, the parameters with a momentum buffer that had no gradient
at the last step (SGD did not move them), and those of plain SGD whose previous gradient was in
the first of the bucket's two rows (they take turns; the products' rounding depends on the row)."""


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
            (default :data:`DEFAULT_START_FACTOR`). Below 1 it is a warm-up: the factor grows by
            ``exp(hyper_lr)`` a step until it is back at 1 or the cosines' running average turns
            negative (an overshoot), and stays at most where the warm-up ended until twice the
            warm-up's steps, which keeps a start at the edge of stability from damaging the
            network in its first steps; 1.0 starts at ``lr`` exactly, as in the paper.
        drift: added to the cosine, ``exp(hyper_lr * (cos + drift))``: a small positive drift
            counters the hypergradient's short-horizon bias toward too small rates (default
            :data:`DEFAULT_DRIFT`).
        evidence: after a warm-up back at ``lr`` without an overshoot, a step moves the rate only
            while the running mean of ``cos + drift`` is more than this many of its standard
            errors from 0 (default :data:`DEFAULT_EVIDENCE`; 0: every step moves it). Near a good
            rate the cosines are noise with a slightly negative mean that would slide it down.
        trust: the factor from ``lr``, either way, at which that trust ends and every step moves
            the rate again (default :data:`DEFAULT_TRUST`; above 1): a start the evidence carried
            that far was wrong.
        flat_grads: keep the gradients in the wrapper's flat buffer (True: its ``zero_grad``
            leaves them as zero tensors on it rather than None, and sets a gradient that nothing
            accumulated into back to None before the step when ``set_to_none``; the steps are bit
            for bit those of ``False``) or let the wrapped optimizer's ``zero_grad`` drop them and
            copy them each step (False: a gradient tensor kept from an earlier step is never
            overwritten).

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
        flat_grads: bool = True,
        evidence: float = DEFAULT_EVIDENCE,
        trust: float = DEFAULT_TRUST,
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
        if isinstance(evidence, bool) or not isinstance(evidence, (int, float)) or not 0 <= evidence < math.inf:
            raise ConfigError(
                f"HypergradientOptimizer(evidence=...) must be a number >= 0 such as {DEFAULT_EVIDENCE} "
                f"(0: every step moves the rate, no trust in the start), got {evidence!r}"
            )
        if not _positive(trust) or trust <= 1:
            raise ConfigError(
                f"HypergradientOptimizer(trust=...) must be a number above 1 such as {DEFAULT_TRUST} (the factor "
                f"either way from the start within which moves need evidence), got {trust!r}"
            )
        if not isinstance(per_group, bool):
            raise ConfigError(f"HypergradientOptimizer(per_group=...) must be True or False, got {per_group!r}")
        if not isinstance(flat_grads, bool):
            raise ConfigError(f"HypergradientOptimizer(flat_grads=...) must be True or False, got {flat_grads!r}")
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
        self.evidence = float(evidence)
        self.trust = float(trust)
        self.flat_grads = flat_grads
        self._prev: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> previous direction, outside a bucket
        self._modes: dict[torch.Tensor, str] = {}  # parameter -> the kind of its direction
        self._still: set[torch.Tensor] = set()  # loaded: SGD did not move them at the last step
        self._flipped: set[torch.Tensor] = set()  # loaded: their previous gradient was in the bucket's first row
        self._cache_key: list[tuple[tuple[int, ...], str]] | None = None
        self._quick_key: tuple[Any, ...] | None = None
        self._sgd = type(optimizer) is torch.optim.SGD
        self._cache: list[list[_Bucket]] = []
        self._measured: list[_Bucket] = []  # the buckets whose direction is the parameters' change
        self._several: list[_Bucket] = []  # every bucket, where there are several
        self._moving: list[_Bucket] = []  # the buckets with something to do after the step
        self._inner_key: Any = None  # the wrapped optimizer's class's step, as last seen
        self._inner_fns: tuple[Any, Any] = (None, None)  # what is under torch's layers of it
        self._share(self.start_factor)

    def _share(self, start: float) -> None:
        """Share the wrapped optimizer's groups and state (again after it loaded a state dict); a
        group without a factor starts at ``start`` (below 1: in the warm-up)."""
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        for group in self.param_groups:
            if SCALE_KEY not in group:
                group[SCALE_KEY] = start
                group[WARMUP_KEY] = [0.0, self._ceiling_steps(start)] if start < 1 else None
                group[CEILING_KEY] = None
                group[TRUST_KEY] = None
            if self.lr_bounds is not None and group["lr"] > 0:
                group[SCALE_KEY] = self._clamp(group["lr"], group[SCALE_KEY])

    def _ceiling_steps(self, start: float) -> int:
        """The steps from the first cosine until the factor may pass 1: twice the warm-up's
        ``ln(1 / start) / hyper_lr`` (46 at the defaults)."""
        return max(1, round(2 * math.log(1 / start) / self.hyper_lr))

    # -- the rates -------------------------------------------------------------------------------
    @property
    def lrs(self) -> list[float]:
        """The effective learning rate of each param group: its ``lr`` times the adapted factor."""
        return [float(g["lr"]) * float(g.get(SCALE_KEY, 1.0)) for g in self.param_groups]

    def set_lr(self, lr: float, group: int | None = None) -> None:
        """Set the learning rate of one param group (or all) and adapt again from it. Under a
        ``LambdaLR`` schedule, which recomputes ``lr`` from its ``base_lrs``, use
        :func:`tunelab.torch.live.apply_to_optimizer` (it sets the base) instead."""
        if not _positive(lr):
            raise ConfigError(f"set_lr(lr=...) must be a positive number, got {lr!r}")
        n = len(self.param_groups)
        if group is not None and (isinstance(group, bool) or not isinstance(group, int) or not -n <= group < n):
            raise ConfigError(f"set_lr(group=...) must be the index of a param group, 0 to {n - 1}, or None (every "
                              f"group), got {group!r}")
        groups = self.param_groups if group is None else [self.param_groups[group]]
        for g in groups:
            g["lr"] = float(lr)
            g[SCALE_KEY] = 1.0 if self.lr_bounds is None else self._clamp(float(lr), 1.0)
            g[WARMUP_KEY] = g[CEILING_KEY] = g[TRUST_KEY] = None

    def _clamp(self, lr: float, scale: float) -> float:
        assert self.lr_bounds is not None
        low, high = self.lr_bounds
        return min(max(scale, low / lr), high / lr)

    # -- torch's optimizer -----------------------------------------------------------------------
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Adapt each group's rate from the new gradients and the previous direction, then take
        the wrapped optimizer's step at the effective rate (and note its direction). The step
        pre- and post-hooks run as in torch (``register_step_pre_hook``, the global ones)."""
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_pre_hooks
                or _global_post_hooks or _profiling()):
            return self._hooked_step(closure)
        enabled = torch.is_grad_enabled()
        _set_grad_enabled(False)  # what torch.no_grad() does, without its context manager's cost
        try:
            return self._step(closure, closure is None)
        finally:
            _set_grad_enabled(enabled)

    # Torch's Optimizer.__init__ wraps an unmarked ``step`` in a profiler range and the step hooks;
    # the range alone costs about 5 us a step, so this step runs the hooks itself and opens the
    # range only while a profiler records.
    step.hooked = True  # type: ignore[attr-defined]

    def _hooked_step(self, closure: Callable[[], float] | None) -> float | None:
        """:meth:`step` with its hooks (``register_step_pre_hook``, the global ones) and, while a
        profiler records, its range, as torch's ``Optimizer.profile_hook_step`` does."""
        if _profiling():
            with torch.autograd.profiler.record_function("Optimizer.step#HypergradientOptimizer.step"):
                return self._step_with_hooks(closure)
        return self._step_with_hooks(closure)

    def _step_with_hooks(self, closure: Callable[[], float] | None) -> float | None:
        args: tuple[Any, ...] = (self,) if closure is None else (self, closure)
        kwargs: dict[str, Any] = {}
        for hook in (*_global_pre_hooks.values(), *self._optimizer_step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"{hook} must return None or a tuple of (new_args, new_kwargs), "
                                       f"got {result}")
                args, kwargs = result
        with torch.no_grad():
            loss = self._step(*args[1:], **kwargs)
        self._optimizer_step_code()
        for hook in (*self._optimizer_step_post_hooks.values(), *_global_post_hooks.values()):
            hook(self, args, kwargs)
        return loss

    def _inner_step(self) -> float | None:
        """The wrapped optimizer's step (no closure, no hooks or profiler on this wrapper): its own
        ``step`` function without torch's layers around it where they would do nothing, that is
        where it has no step hooks (nor any global ones), no profiler records, nothing patched
        its ``step`` (a scheduler on the wrapped optimizer itself) and nothing compiles. Torch's
        profiler range alone costs about a twentieth of a small MLP's step on a CPU (measured:
        24 us of 460), more than the hypergradient's own work; a profiler or a hook still sees
        the wrapped step, through :meth:`torch.optim.Optimizer.step` as usual."""
        inner = self.optimizer
        step = type(inner).step
        if step is not self._inner_key:
            self._inner_key = step
            self._inner_fns = _unwrapped_step(step)
        own, switched = self._inner_fns
        if (own is None or inner._optimizer_step_pre_hooks or inner._optimizer_step_post_hooks
                or "step" in inner.__dict__ or _compiling()):
            return inner.step()
        loss: float | None = switched(inner) if inner.defaults.get("differentiable") else own(inner)
        inner._optimizer_step_code()  # where torch's profiler (Python tracing) reads the state
        return loss

    def _quick(self) -> tuple[Any, ...]:
        """What the buckets depend on, cheaply: each group's list of parameters (not changed in
        place, as torch assumes) and, with SGD, the settings that pick the kind of direction."""
        groups = self.param_groups
        return (*map(id, map(_params, groups)), *map(len, map(_params, groups)),
                *(map(_sgd_settings, groups) if self._sgd else ()))

    def _step(self, closure: Callable[[], float] | None = None, unhooked: bool = False) -> float | None:
        groups = self.param_groups
        quick = self._quick()
        if quick != self._quick_key:
            key = [(tuple(map(id, g["params"])), self._mode(g)) for g in groups]  # ids: no Tensor.__eq__
            if key != self._cache_key:
                self._rebuild(key)
            self._quick_key = quick
        scheduled = self._adapt(groups)  # each group's lr is now the effective rate
        for bucket in self._measured:
            torch._foreach_copy_(bucket.prev_views, bucket.params)  # p_before (the direction's row is free now)
        try:
            if unhooked:
                loss = self._inner_step()
            elif closure is None:
                loss = self.optimizer.step()
            else:
                with torch.enable_grad():
                    loss = self.optimizer.step(closure)  # type: ignore[arg-type]
        finally:
            for g, lr in zip(groups, scheduled, strict=True):
                g["lr"] = lr
        for bucket in self._moving:
            bucket.stepped()
        return loss

    def _mode(self, group: dict[str, Any]) -> str:
        """How a group's previous direction is known: from the wrapped SGD's own state when its
        update is a positive multiple of it (the direction's scale cancels in the cosine, which
        needs ``per_group`` or one group), else measured as the parameters' change."""
        if not self._sgd or group.get("maximize") or group.get("nesterov"):
            return _MEASURED
        if not self.per_group and len(self.param_groups) > 1:
            return _MEASURED
        if group.get("momentum", 0) != 0:
            return _MOMENTUM  # u = lr * momentum buffer (weight decay and dampening are in the buffer)
        return _GRADIENT if group.get("weight_decay", 0) == 0 else _MEASURED  # u = lr * gradient

    def _directions(self) -> dict[torch.Tensor, torch.Tensor]:
        """Each parameter's kept previous direction (the momentum buffers are the wrapped SGD's)."""
        prev = dict(self._prev)
        for group_buckets in self._cache:
            for b in group_buckets:
                for p in b.params:
                    prev.pop(p, None)
                if b.ready and b.mode is not _MOMENTUM:
                    prev.update(zip(b.params, b.prev_views, strict=True))
                elif b.seed is not None:
                    prev.update(zip(b.params, b.seed, strict=True))
        return prev

    def _rebuild(self, key: list[tuple[tuple[int, ...], str]]) -> None:
        """Each group's parameters by device and dtype, each bucket with two flat rows, the new
        gradient and the previous direction, made again when the groups or their kind of
        direction changed (``key``: each group's parameters and kind) or a state dict was loaded."""
        self._prev = self._directions()
        cache: list[list[_Bucket]] = []
        for group, (_, mode) in zip(self.param_groups, key, strict=True):
            params = group["params"]
            by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            switched = False
            for p in params:
                by_kind.setdefault((p.device, p.dtype), []).append(p)
                before = self._modes.get(p, mode)
                if before is not mode:  # a live change (momentum on or off): the last step's direction
                    switched = True
                    if before is _MOMENTUM:
                        state = self.state.get(p)
                        buffer = state.get("momentum_buffer") if state else None
                        self._prev.pop(p, None)
                        if buffer is not None:
                            self._prev[p] = buffer
                self._modes[p] = mode
            cache.append([_Bucket(ps, [self._prev.get(p) for p in ps], mode, self.state, switched,
                                  new=int(mode is _GRADIENT and ps[0] in self._flipped))
                          for ps in by_kind.values()])
            for b in cache[-1]:
                b.missing = [i for i, p in enumerate(b.params) if p in self._still]
        self._flipped = set()  # placed: the rows alternate from here as they did before the state was saved
        self._cache_key, self._cache = key, cache
        self._measured = [b for bs in cache for b in bs if b.mode is _MEASURED]
        self._moving = [b for bs in cache for b in bs if b.mode is not _MOMENTUM]
        every = [b for bs in cache for b in bs]
        self._several = every if len(every) > 1 else []  # several buckets: gradients' versions compared across them

    def _adapt(self, groups: list[dict[str, Any]]) -> list[Any]:
        """Multiply each group's ``hd_scale`` by ``exp(hyper_lr * (cos(g_t, u_{t-1}) + drift))`` (in
        the warm-up by ``exp(hyper_lr)``, under the ceiling after it to the ceiling at most) and set
        its ``lr`` to the effective rate; returns the scheduled rates (to be set back)."""
        stats = []  # per group: g.u, |g|^2, |u|^2
        if self._several:
            # which gradients autograd left alone is read from their versions against the most any
            # gradient rose (clip_grad_norm_ raises them all once): over every bucket, not each alone
            high = max(map(_Bucket.rise, self._several))
            for b in self._several:
                b.high = high
        for group_buckets in self._cache:
            dot = g2 = d2 = 0.0
            for b in group_buckets:
                products = b.gram()
                if products is not None:
                    g2 += products[0]
                    dot += products[1]
                    d2 += products[2]
            stats.append((dot, g2, d2))
        if not self.per_group and len(stats) > 1:
            total = (sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats))
            stats = [total] * len(stats)
        hyper_lr, drift, bounds = self.hyper_lr, self.drift, self.lr_bounds
        scheduled = []
        for group, (dot, g2, d2) in zip(groups, stats, strict=True):
            denominator = math.sqrt(g2 * d2)
            scale = group[SCALE_KEY]
            if denominator > 0:
                cos = dot / denominator
                if math.isfinite(cos):
                    cos = -1.0 if cos < -1.0 else 1.0 if cos > 1.0 else cos
                    warmup, ceiling = group.get(WARMUP_KEY), group.get(CEILING_KEY)
                    if warmup is not None:
                        scale = self._warm(group, warmup, cos, scale)
                    else:
                        trust = group.get(TRUST_KEY)
                        move = trust is None or self.evidence == 0 or self._evident(group, trust, cos + drift)
                        if ceiling is not None:
                            scale = self._ceiled(group, ceiling, cos, scale, move)
                        elif move:
                            scale *= math.exp(hyper_lr * (cos + drift))
                        if trust is not None and not 1 / self.trust < scale < self.trust:
                            group[TRUST_KEY] = None  # the evidence carried the rate away from the start
            lr = group["lr"]
            if bounds is not None and lr > 0:
                scale = self._clamp(lr, scale)
            group[SCALE_KEY] = scale
            group["lr"] = lr * scale
            scheduled.append(lr)
        return scheduled

    def _warm(self, group: dict[str, Any], warmup: list[Any], cos: float, scale: float) -> float:
        """One warm-up step of a group: the factor up by ``exp(hyper_lr)``. The warm-up ends at 1
        or at an overshoot (the cosines' running average negative: the factor stays where it is);
        the factor where it ended is then its ceiling for the steps left of the warm-up's count."""
        average = WARMUP_BETA * float(warmup[0]) + (1 - WARMUP_BETA) * cos
        left = int(warmup[1]) - 1
        if average >= 0:
            scale *= math.exp(self.hyper_lr)
            if scale < 1.0:
                group[WARMUP_KEY] = [average, left]
                return scale
            scale = 1.0
        group[WARMUP_KEY] = None
        group[CEILING_KEY] = [left, scale] if left > 0 else None
        # back at lr: the start is trusted; an overshoot showed it too high (every step moves the rate)
        group[TRUST_KEY] = [0.0, 0.0, 0.0] if scale == 1.0 else None
        return scale

    def _ceiled(self, group: dict[str, Any], ceiling: list[Any], cos: float, scale: float,
                move: bool = True) -> float:
        """One step of the rule under the ceiling that follows the warm-up: the factor at most
        ``ceiling[1]`` for ``ceiling[0]`` more steps (``move`` False: the factor stays)."""
        left, top = int(ceiling[0]), float(ceiling[1])
        if move:
            scale *= math.exp(self.hyper_lr * (cos + self.drift))
        group[CEILING_KEY] = [left - 1, top] if left > 1 else None
        return min(scale, top)

    def _evident(self, group: dict[str, Any], trust: list[Any], signal: float) -> bool:
        """Add ``signal`` (``cos + drift``) to the trust's running moments; True where the rule
        moves the rate: their mean is more than ``evidence`` standard errors from 0. Near a good
        rate the cosines are minibatch noise whose mean is slightly negative (the hypergradient's
        short-horizon bias); each such step would lower the rate a little, together a lot, while
        a rate far too small (cosines far above 0) or an overshoot (far below) is evident."""
        beta = TRUST_BETA
        mean, square, weight = map(float, trust)
        mean = beta * mean + (1 - beta) * signal
        square = beta * square + (1 - beta) * signal * signal
        weight = beta * weight + (1 - beta)
        group[TRUST_KEY] = [mean, square, weight]
        average = mean / weight
        variance = max(square / weight - average * average, 0.0)
        # |mean| > evidence * standard error, as for independent values: the weights' squares sum to
        # ``share`` (1 after one value: no evidence yet); the unbiased variance is variance / (1 - share)
        share = (1 - beta) / (1 + beta) * (2 - weight) / weight
        k = self.evidence
        return share < 1 and average * average * (1 - share) > k * k * variance * share

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients. With ``flat_grads`` (the default), after the first step, the
        gradients of each bucket that can hold them (SGD with momentum, Adam, AdamW: any
        direction that is not the previous gradient itself) are tensors on the bucket's flat
        gradient row, zeroed by one operation and left in place (zeros, not None: autograd
        accumulates into them, so the hypergradient's products need no copy); a parameter that
        then gets no gradient has it set to None before the step where ``set_to_none``, as
        torch would. Otherwise, and for the other parameters, the wrapped optimizer's
        ``zero_grad``."""
        if not self.flat_grads or not self._cache or self._quick() != self._quick_key:
            self.optimizer.zero_grad(set_to_none=set_to_none)
            return
        others: list[torch.Tensor] = []
        flat = False
        for group_buckets in self._cache:
            for bucket in group_buckets:
                if bucket.zero_flat(set_to_none):
                    flat = True
                else:
                    others.extend(bucket.params)
        if not flat:
            self.optimizer.zero_grad(set_to_none=set_to_none)
        elif others:
            _zero_grads(others, set_to_none)

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
        prev = self._directions()
        still = {b.params[i] for bs in self._cache for b in bs if b.mode is _MOMENTUM for i in b.missing}
        # plain SGD's rows take turns: which row holds the previous gradient (the products' rounding depends on it)
        flipped = self._flipped | {p for bs in self._cache for b in bs if b.mode is _GRADIENT and b.new
                                   for p in b.params}
        state[STATE_KEY] = {"prev": {i: prev[p] for i, p in enumerate(params) if p in prev},
                            "still": [i for i, p in enumerate(params) if p in still],
                            "flipped": [i for i, p in enumerate(params) if p in flipped]}
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
        self._still = {params[int(i)] for i in saved.get("still", [])}
        self._flipped = {params[int(i)] for i in saved.get("flipped", [])}
        self._cache_key, self._quick_key, self._cache, self._modes = None, None, [], {}
        self._measured, self._moving, self._several = [], [], []

    def __repr__(self) -> str:
        bounds = f", lr_bounds={self.lr_bounds}" if self.lr_bounds is not None else ""
        flat = "" if self.flat_grads else ", flat_grads=False"
        return (f"HypergradientOptimizer({self.optimizer!r}, hyper_lr={self.hyper_lr}, "
                f"per_group={self.per_group}{bounds}, start_factor={self.start_factor}, drift={self.drift}, "
                f"evidence={self.evidence}, trust={self.trust}{flat})")


_MEASURED, _GRADIENT, _MOMENTUM = "measured", "gradient", "momentum"
"""How a bucket knows its previous direction: the parameters' change over the step (any
optimizer), the previous gradient (plain SGD), the wrapped SGD's momentum buffer."""


class _Bucket:
    """Parameters of one group, device and dtype, and two flat rows: the new gradient and the
    previous direction (``prev_views``: one view of it per parameter, shaped like it), so that
    one matrix product gives every dot product. With plain SGD the rows take turns: the new
    gradient is the next step's direction."""

    def __init__(self, params: list[torch.Tensor], saved: list[torch.Tensor | None], mode: str,
                 state: dict[Any, dict[str, Any]], switched: bool = False, new: int = 0) -> None:
        self.params = params
        self.mode = mode
        self.state = state
        size = sum(p.numel() for p in params)
        self.rows = torch.zeros(2, size, dtype=params[0].dtype, device=params[0].device)
        self.rows_t = self.rows.t()
        self.row_views: list[list[torch.Tensor]] = [[], []]
        self.offsets = [0]
        for p in params:
            offset = self.offsets[-1]
            for row, views in zip(self.rows, self.row_views, strict=True):
                views.append(row[offset:offset + p.numel()].view_as(p))
            self.offsets.append(offset + p.numel())
        self.new = new  # the row that takes the new gradient
        # With flat_grads: the parameters' gradients as tensors on row 0 (not views: each has its
        # own version counter, which tells whether autograd accumulated into it), once the
        # wrapper's zero_grad put them there. Never for plain SGD, whose previous direction is
        # the previous gradient (a gradient on the direction's row would be changed by the
        # user's next backward or zeroing).
        self.flat: list[torch.Tensor] | None = None
        self.flat_ok: bool | None = False if mode is _GRADIENT else None
        # Each parameter's expected gradient: its tensor on the row, None where it had no gradient
        # when zero_grad was called (frozen: it stays None, as after torch's zero_grad).
        self.expect: list[torch.Tensor | None] | None = None
        self.partial = False  # some expected gradient is None
        self.flat_ptrs: list[int] = []  # where the tensors' data starts: elsewhere once something set their .data
        self.flat_versions: list[int] = []
        self.high = 0  # the most any gradient of the optimizer's flat buckets rose since zero_grad (several buckets)
        self.to_none = True  # the last zero_grad's set_to_none
        self.adopted: list[dict[str, Any]] | None = None  # with momentum: each parameter's state, all buffers adopted
        self.missing: list[int] = []  # the parameters without a gradient at the last step
        self.ready = mode is not _MOMENTUM and all(d is not None for d in saved)
        if self.ready:
            torch._foreach_copy_(self.prev_views, saved)  # type: ignore[arg-type]
        # Momentum switched on: the last step's direction (not SGD's stale buffers) for one step.
        self.seed: list[torch.Tensor] | None = None
        if mode is _MOMENTUM and switched and all(d is not None for d in saved):
            self.seed = [d.detach().clone() for d in saved]  # type: ignore[union-attr]

    @property
    def prev_views(self) -> list[torch.Tensor]:
        """The previous direction, one view per parameter."""
        return self.row_views[1 - self.new]

    def gram(self) -> tuple[float, float, float] | None:
        """``g.g, g.u, u.u`` of the new gradient ``g`` (a missing one is 0) and the previous
        direction ``u``, or None before there is one: one matrix product, after a copy of the
        gradients into the new row unless they are already there (:meth:`zero_flat`)."""
        grads = list(map(_grad, self.params))
        new = self.new
        expect = self.expect
        on_row = expect is not None and list(map(_data_ptr, self.flat or ())) == self.flat_ptrs
        in_place = on_row and expect is not None and all(map(operator.is_, grads, expect))  # all still on the row
        if on_row and not in_place and self.to_none:
            # some gradient is new (it was None at zero_grad: a parameter unused then): those left
            # on the row that nothing accumulated into still go back to None, as torch's would be
            self._drop_unused(grads)
        dropped = in_place and ((self.to_none and self._drop_unused(grads)) or self.partial)
        if self.mode is _MOMENTUM:
            self.ready = self._load_buffers()
            if self.seed is not None or self.missing:
                return self._gram_slow(grads, copy=not in_place)
        elif not self.ready and self.mode is _MEASURED:
            return None
        if dropped:
            return self._gram_slow(grads, copy=False)
        if not in_place:
            try:
                torch._foreach_copy_(self.row_views[new], grads)  # type: ignore[arg-type]
            except (TypeError, RuntimeError):  # a parameter without a gradient: its part is 0
                if all(g is not None for g in grads):
                    raise
                return self._gram_slow(grads)
        self.missing = []
        if not self.ready:
            return None
        products = torch.mm(self.rows, self.rows_t).tolist()
        old = 1 - new
        return products[new][new], products[new][old], products[old][old]

    def _gram_slow(self, grads: list[torch.Tensor | None], copy: bool = True) -> tuple[float, float, float] | None:
        """:meth:`gram` where a parameter has no gradient now, or with momentum one had none at
        the last step (SGD did not move it: its buffer is stale), or momentum was switched on;
        ``copy`` False: the gradients are already in the new row (a missing one's part is 0)."""
        missing = [i for i, g in enumerate(grads) if g is None]
        direction: torch.Tensor | None = None
        if self.mode is _MOMENTUM:
            if self.seed is not None:
                direction, self.seed, self.ready = torch.cat([d.reshape(-1) for d in self.seed]), None, True
            elif self.missing:  # SGD did not move them (their buffers are stale): their part is 0
                direction = self.rows[1 - self.new].clone()
                for i in self.missing:
                    self.segment(direction, i).zero_()
        self.missing = missing
        if not self.ready and self.mode is not _GRADIENT:
            return None
        if copy:
            filled = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)]
            torch._foreach_copy_(self.row_views[self.new], filled)
        if not self.ready:
            return None
        if direction is not None:  # a copy: the row is SGD's state
            pair = torch.stack([self.rows[self.new], direction])
            (gg, gu), (_, uu) = torch.mm(pair, pair.t()).tolist()
            return gg, gu, uu
        n, o = self.new, 1 - self.new
        products = torch.mm(self.rows, self.rows_t).tolist()
        return products[n][n], products[n][o], products[o][o]

    def zero_flat(self, set_to_none: bool) -> bool:
        """The wrapper's ``zero_grad`` for this bucket: zero the new row and make the gradient of
        each parameter that has one its tensor on it (put there once, or again where something
        replaced it; a parameter without one, frozen, keeps None); False where this bucket does
        not keep its gradients there (plain SGD, sparse gradients)."""
        grads = list(map(_grad, self.params))
        if self.flat_ok is None:
            self.flat_ok = all(g is None or g.layout is torch.strided for g in grads)
        if not self.flat_ok:
            return False
        flat = self.flat
        if flat is None or list(map(_data_ptr, flat)) != self.flat_ptrs:  # new, or moved off the row (Module.to)
            storage = self.rows.untyped_storage()
            flat = self.flat = [
                torch.empty(0, dtype=v.dtype, device=v.device).set_(storage, v.storage_offset(), v.shape, v.stride())
                for v in self.row_views[self.new]]
            self.flat_ptrs, self.expect = list(map(_data_ptr, flat)), None
        self.rows[self.new].zero_()
        if self.expect is None or not all(map(operator.is_, grads, self.expect)):
            expect: list[torch.Tensor | None] = []
            for p, grad, tensor in zip(self.params, grads, flat, strict=True):
                if grad is None:
                    expect.append(None)
                    continue
                if grad is not tensor:
                    p.grad = tensor
                expect.append(tensor)
            self.expect, self.partial = expect, any(t is None for t in expect)
        self.flat_versions = list(map(_version, flat))
        self.to_none = set_to_none
        return True

    def _drop_unused(self, grads: list[torch.Tensor | None]) -> bool:
        """Set to None the gradients (in ``grads`` too) that autograd did not accumulate into
        since :meth:`zero_flat`, as they would be after torch's ``zero_grad()``; True if any.
        Autograd's accumulation raises a tensor's version, and so does anything that changes all
        gradients in place (``clip_grad_norm_``, a grad scaler's unscale), so a gradient is new
        where its version rose, except where others rose more and it is still all zero."""
        flat = self.flat or []
        # a gradient that is no longer its tensor on the row (new since zero_grad) is left alone
        deltas = [now - before if g is None or g is t else None
                  for g, t, now, before in zip(grads, flat, map(_version, flat), self.flat_versions, strict=True)]
        counted = [d for d in deltas if d is not None]
        if not counted:
            return False
        # against the other buckets too: in a bucket whose gradients all got none (a head unused at this
        # step), clip_grad_norm_ raised every version once, as accumulating once would have
        low, high = min(counted), max(*counted, self.high)
        if low == high and low > 0:
            return False  # the usual: every gradient accumulated into the same number of times
        rose = [d for d in counted if d > 0]
        least = min(rose) if rose and min(rose) < high else 0
        dropped = False
        for i, delta in enumerate(deltas):
            if delta is None:
                continue
            if delta == 0 or (delta == least and not bool(self.segment(self.rows[self.new], i).any())):
                self.params[i].grad = None
                grads[i] = None
                dropped = True
        return dropped

    def rise(self) -> int:
        """The most the version of a gradient still on the row rose since :meth:`zero_flat` (0: none)."""
        flat = self.flat
        if not flat or self.expect is None:
            return 0
        rises = [now - before for g, t, now, before in
                 zip(map(_grad, self.params), flat, map(_version, flat), self.flat_versions, strict=True) if g is t]
        return max(rises, default=0)

    def _load_buffers(self) -> bool:
        """Make the wrapped SGD's momentum buffers views of the direction's row (copied once, when
        SGD made a new one: it updates them in place after); False if no parameter has one yet."""
        states = self.adopted
        if states is not None and all(map(operator.is_, map(_get_buffer, states), self.prev_views)):
            return True  # every buffer is still the row's view (one pass in C: no Tensor hashing)
        adopted = 0
        for p, view in zip(self.params, self.prev_views, strict=True):
            state = self.state.get(p)
            buffer = state.get("momentum_buffer") if state else None
            if buffer is view:
                adopted += 1
            elif buffer is not None:
                view.copy_(buffer)
                state["momentum_buffer"] = view  # type: ignore[index]
                adopted += 1
        self.adopted = [self.state[p] for p in self.params] if adopted == len(self.params) else None
        return adopted > 0

    def segment(self, flat: torch.Tensor, index: int) -> torch.Tensor:
        """Parameter ``index``'s part of a flat row."""
        return flat[self.offsets[index]:self.offsets[index + 1]]

    def stepped(self) -> None:
        """After the wrapped optimizer's step: the measured direction ``p_before - p_after``, or
        the new gradient becomes the previous one."""
        if self.mode is _MEASURED:
            torch._foreach_sub_(self.prev_views, self.params)
            self.ready = True
        elif self.mode is _GRADIENT:
            self.new = 1 - self.new
            self.ready = True


def _zero_grads(params: list[torch.Tensor], set_to_none: bool) -> None:
    """Torch's ``Optimizer.zero_grad`` for these parameters."""
    for p in params:
        grad = p.grad
        if grad is None:
            continue
        if set_to_none:
            p.grad = None
            continue
        if grad.grad_fn is not None:
            grad.detach_()
        else:
            grad.requires_grad_(False)
        grad.zero_()


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def effective_lr(optimizer: torch.optim.Optimizer, group: int = 0) -> float:
    """The rate a param group steps with: its ``lr`` times its adapted factor (1 when none)."""
    g = optimizer.param_groups[group]
    return float(g["lr"]) * float(g.get(SCALE_KEY, 1.0))


__all__ = ["DEFAULT_HYPER_LR", "HypergradientOptimizer", "effective_lr"]
