"""Hyperparameter importance: which hyperparameters matter, and how much.

Two methods, both returning each parameter's *share* (in [0, 1], summing to 1 over the
parameters asked about, largest first)::

    shares = importance(study)                       # fANOVA (default)
    shares = importance(study, method="ped_anova")   # PED-ANOVA: fast, for large studies
    print(advice(shares))
    # "lr and weight_decay explain 85% of the variance; batch_size under 2%: fix it and tune the rest"

**fANOVA** (Hutter, Hoos & Leyton-Brown, ICML 2014). A random forest (scikit-learn) is fitted
on the COMPLETE trials, parameters in unit coordinates -> objective value. A regression tree
is a piecewise-constant function on boxes, so its functional ANOVA decomposition under the
uniform measure on the space is computed *exactly* from its leaves: the total variance of
the tree's prediction, and for each parameter the variance of its main effect (the
prediction averaged over every other parameter, as a function of that one alone). Both are
sums over leaf boxes, done with numpy over all leaves at once. A parameter's share is its
main-effect variance divided by the tree's total variance, averaged over the trees (Hutter
et al.'s "fraction of variance explained"), then **normalised to sum to 1 over the
parameters asked about** (so interactions, which the main effects leave unexplained, are
spread proportionally rather than reported).

**PED-ANOVA** (Watanabe, Bansal & Hutter, IJCAI 2023). For each parameter, the Pearson
divergence between its distribution among the top 10% of trials and among all trials:
``sum p_top^2 / p_all - 1``. A parameter on which good trials concentrate scores high; one
on which good trials are spread like all trials scores about 0. Linear time in trials; no
model. Shares are the divergences normalised to sum to 1. ``p_top^2`` is estimated without
each trial's pairing with itself (a U-statistic), so a parameter that does not matter scores
about 0 instead of a positive bias that grows with the number of cells.

The measure on the space (both methods), from :class:`~tunelab.samplers.model_based.EncodedSpace`:

- numeric parameters live in [0, 1] through ``to_unit``: **log parameters on the log scale**
  (uniform in log space is the natural measure of a learning rate); integers and stepped
  floats at their cell centres (uniform over cells);
- categorical and boolean parameters are **uniform over their choices**;
- a parameter a trial lacks (**inactive under a condition**, or never suggested) takes one
  extra value, "inactive" (-1 for the forest), with the weight of the trials in which it was
  inactive; its active values share the rest as above. Its importance therefore counts both
  *whether* it is active and *which value* it has when it is. Optuna instead drops such
  parameters (fANOVA on the intersection space); tunelab keeps them, because a conditional
  parameter such as the momentum of SGD is often exactly the question.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int
from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState, check_direction
from tunelab.samplers.model_based import EncodedSpace
from tunelab.study import Study

if TYPE_CHECKING:  # pragma: no cover
    from sklearn.ensemble import RandomForestRegressor

METHODS = ("fanova", "ped_anova")

INACTIVE = -1.0
"""The forest's value for a parameter a trial lacks (outside [0, 1], so a split separates it)."""

N_TREES = 64
"""Trees in the fANOVA forest (as Optuna's evaluator; Hutter et al. used 30)."""

MAX_SAMPLES = 2000
"""Each tree is fitted on a bootstrap sample of at most this many trials, so the cost of a tree,
and of its decomposition, stops growing with the study (64 trees of 2,000 draws: at 10,000 trials
practically every trial is in some tree; beyond about 50,000 a growing part is never used)."""

TOP_QUANTILE = 0.1
"""PED-ANOVA's "good" trials: the best 10%."""

N_BINS = 50
"""PED-ANOVA's grid on [0, 1] for numeric parameters."""


# --------------------------------------------------------------------------------------------
# Public API


def importance(
    study: Study | Sequence[FrozenTrial],
    *,
    method: str = "fanova",
    params: Sequence[str] | None = None,
    seed: int = 0,
    direction: str | None = None,
    objective: str | int | None = None,
) -> dict[str, float]:
    """Each hyperparameter's share of the objective's variation, largest first.

    Args:
        study: a :class:`~tunelab.Study`, or its trials (``study.trials``). COMPLETE trials
            with a finite value are used; the others are ignored.
        method: 'fanova' (a random forest and its exact variance decomposition; the default)
            or 'ped_anova' (top-10% versus all trials, per parameter; no model, linear time:
            for studies of many thousands of trials). PED-ANOVA is *local*: it ranks what sets
            the best trials apart, which can differ from what drives the variance overall (a
            choice that every top trial shares ranks high even when its effect is moderate).
        params: the parameters to rank (default: every parameter any used trial has). Shares
            sum to 1 over these; fANOVA still fits its forest on every parameter.
        seed: seeds the forest (fANOVA); the same seed and trials give the same shares.
        direction: 'minimize' or 'maximize'; PED-ANOVA needs it to know which trials are the
            best. Default: the study's direction (the objective's, with ``objective=``), or
            'minimize' for a list of trials.
        objective: with several objectives, the one to rank the parameters for: its name (a
            study's ``objective_names``) or its index in ``trial.values``. Required for a study
            with several objectives (each objective has its own importances); for one objective,
            None or that objective.

    Returns:
        ``{parameter: share}``, shares in [0, 1] summing to 1, sorted by share descending.
        When nothing varies (every share would be 0), the shares are equal.

    Raises:
        ConfigError: fewer than 2 usable trials, an unknown method, an unknown parameter, a
            study with several objectives without ``objective=`` (or an unknown one).
    """
    if method not in METHODS:
        raise ConfigError(f"importance(method=...) must be one of {METHODS}, got {method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"importance(seed=...) must be a non-negative integer, got {seed!r}")
    if isinstance(study, Study):
        trials: Sequence[FrozenTrial] = study.get_trials([TrialState.COMPLETE])
        default_direction = study.direction
    elif isinstance(study, Sequence) and not isinstance(study, (str, bytes)):
        trials = study
        default_direction = "minimize"
        if any(not isinstance(t, FrozenTrial) for t in trials):
            raise ConfigError("importance() needs a Study or a sequence of FrozenTrial (e.g. study.trials)")
    else:
        raise ConfigError(f"importance() needs a Study or a sequence of FrozenTrial (e.g. study.trials), got {study!r}")
    if isinstance(study, Study):
        names, directions = list(study.objective_names), list(study.directions)
    else:
        width = max((len(t.values) for t in trials if t.values is not None), default=1)
        names, directions = [f"objective {i}" for i in range(width)], [default_direction] * width
    index = _objective_index(objective, names, study.name if isinstance(study, Study) else None)
    if index is not None:
        trials = _on_objective(trials, index)
        default_direction = directions[index]
    direction = check_direction(direction) if direction is not None else default_direction

    data = _encode_trials(trials)
    names = _select(data, params)
    if method == "fanova":
        raw = _fanova(data, int(seed))
    else:
        raw = _ped_anova(data, direction)
    return _normalise({n: raw[data.index[n]] for n in names})


def _objective_index(objective: str | int | None, names: Sequence[str], study: str | None) -> int | None:
    """Which value of ``trial.values`` to rank for (None: ``trial.value``, a single objective)."""
    if objective is None:
        if len(names) > 1:
            owner = f"study {study!r}" if study is not None else "the trials"
            raise ConfigError(
                f"{owner} has {len(names)} objectives ({', '.join(names)}) and each has its own importances: "
                f"pass importance(..., objective={names[0]!r}) (a name or an index)"
            )
        return None
    if isinstance(objective, (int, np.integer)) and not isinstance(objective, bool):
        if not 0 <= objective < len(names):
            raise ConfigError(f"importance(objective={objective!r}) is out of range: there are {len(names)} "
                              f"objective(s), {', '.join(names)}")
        return int(objective)
    if isinstance(objective, str) and objective in names and study is not None:
        return names.index(objective)
    known = f"the study's objectives are {', '.join(names)}" if study is not None else \
        "a list of trials has no names: pass the objective's index in trial.values"
    raise ConfigError(f"importance(objective={objective!r}) is not an objective: {known}")


def _on_objective(trials: Sequence[FrozenTrial], index: int) -> list[FrozenTrial]:
    """The COMPLETE trials with that objective's value as their ``value``."""
    return [replace(t, value=float(t.values[index])) for t in trials
            if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) > index]


def advice(shares: Mapping[str, float], *, top: float = 0.8, small: float = 0.02) -> str:
    """One sentence on what to tune next, from :func:`importance`'s shares.

    Names the fewest parameters that together explain at least ``top`` of the variation, and
    the parameters under ``small`` each (fix them at a good value; tune the rest).

    Example: "lr and weight_decay explain 85% of the variance; batch_size under 2%: fix it
    and tune the rest".
    """
    if not isinstance(shares, Mapping) or not shares:
        raise ConfigError("advice() needs the non-empty mapping returned by importance()")
    if not 0.0 < top <= 1.0:
        raise ConfigError(f"advice(top=...) must be in (0, 1], got {top!r}")
    if not 0.0 <= small < 1.0:
        raise ConfigError(f"advice(small=...) must be in [0, 1), got {small!r}")
    ranked = sorted(((str(k), float(v)) for k, v in shares.items()), key=lambda kv: -kv[1])
    if len(ranked) == 1:
        return f"only {ranked[0][0]} was measured: nothing to compare it with"
    if len({share for _, share in ranked}) == 1:  # importance()'s answer when the trials tell nothing apart
        return (f"{_join([name for name, _ in ranked])} have equal shares: the trials do not tell them apart "
                "(too few, or the value did not vary); run more trials before fixing any")
    leaders: list[str] = []
    total = 0.0
    for name, share in ranked:
        if total >= top - 1e-12:
            break
        leaders.append(name)
        total += share
    negligible = [name for name, share in ranked if share < small and name not in leaders]
    verb = "explains" if len(leaders) == 1 else "explain"
    sentence = f"{_join(leaders)} {verb} {_percent(total)} of the variance"
    if negligible:
        pronoun = "it" if len(negligible) == 1 else "them"
        sentence += f"; {_join(negligible)} under {_percent(small)}: fix {pronoun} and tune the rest"
    elif len(leaders) == len(ranked):
        sentence += ": every parameter matters, keep tuning them all"
    else:
        sentence += ": focus the search on " + ("it" if len(leaders) == 1 else "them")
    return sentence


# --------------------------------------------------------------------------------------------
# Trials as arrays


@dataclass(frozen=True)
class _Data:
    """The usable trials in unit coordinates.

    ``X`` (n, d): numeric parameters in [0, 1], categorical ones at their cell centres
    ``(i + 0.5) / k``, NaN where a trial lacks the parameter. ``y`` (n,) values as stored.
    """

    names: tuple[str, ...]
    index: dict[str, int]
    distributions: tuple[Distribution, ...]
    X: np.ndarray
    y: np.ndarray


def _encode_trials(trials: Sequence[FrozenTrial]) -> _Data:
    used = [t for t in trials
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    if len(used) < 2:
        raise ConfigError(
            f"importance needs at least 2 COMPLETE trials with a finite value, got {len(used)}; "
            "run more trials first"
        )
    entries: dict[str, Distribution] = {}
    for t in used:
        entries.update(t.distributions)  # the latest distribution of each parameter, as samplers do
    if not entries:
        raise ConfigError("importance: the trials have no parameters")
    space = EncodedSpace(entries)
    rows = np.array([space.encode(t.params) for t in used], dtype=float).reshape(len(used), len(space))
    cat = space.cat_sizes > 0
    rows[:, cat] = (rows[:, cat] + 0.5) / space.cat_sizes[cat]  # index -> cell centre, as to_unit does
    y = np.array([float(t.value) for t in used if t.value is not None], dtype=float)
    return _Data(space.names, dict(space.index), space.distributions, rows, y)


def _select(data: _Data, params: Sequence[str] | None) -> list[str]:
    if params is None:
        return list(data.names)
    if isinstance(params, str) or not isinstance(params, Sequence):
        raise ConfigError(f"importance(params=...) must be a list of parameter names, got {params!r}")
    names = list(dict.fromkeys(params))
    if not names:
        raise ConfigError("importance(params=...) is empty; give at least one parameter name, or None for all")
    unknown = [n for n in names if n not in data.index]
    if unknown:
        raise ConfigError(
            f"importance: unknown parameter(s) {unknown}; the trials have {sorted(data.names)}"
        )
    return names


def _normalise(raw: Mapping[str, float]) -> dict[str, float]:
    values = np.array([max(float(v), 0.0) if math.isfinite(v) else 0.0 for v in raw.values()])
    total = float(values.sum())
    shares = values / total if total > 0 else np.full(len(values), 1.0 / len(values))
    order = sorted(range(len(values)), key=lambda i: -shares[i])  # stable: ties keep space order
    names = list(raw)
    return {names[i]: float(shares[i]) for i in order}


def _n_cells(dist: Distribution) -> int:
    """How many values a parameter takes (0: a continuum)."""
    if isinstance(dist, Categorical):
        return len(dist.choices)
    if isinstance(dist, Bool):
        return 2
    if isinstance(dist, Int) and not dist.log:
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, Float) and dist.step is not None:
        return int(round((dist.high - dist.low) / dist.step)) + 1
    return 0


# --------------------------------------------------------------------------------------------
# fANOVA


def _forest(n: int, seed: int) -> RandomForestRegressor:
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError as e:  # pragma: no cover - scikit-learn is a dev dependency
        raise ConfigError(
            "importance(method='fanova') needs scikit-learn: pip install 'tunelab[report]' "
            "(or use method='ped_anova', which needs nothing more)"
        ) from e
    return RandomForestRegressor(
        n_estimators=N_TREES,
        max_features=1.0,
        min_samples_leaf=1,
        bootstrap=True,
        max_samples=min(n, MAX_SAMPLES),
        random_state=seed,
        n_jobs=1,
    )


def _fanova(data: _Data, seed: int) -> np.ndarray:
    """Per parameter, its main-effect variance as a fraction of the total, averaged over trees."""
    features = data.X.copy()
    inactive = np.isnan(features)
    features[inactive] = INACTIVE
    weight_inactive = inactive.mean(axis=0)  # the measure of the "inactive" value
    y = data.y
    d = features.shape[1]
    scale = float(np.std(y))
    if scale == 0.0:
        return np.zeros(d)
    forest = _forest(len(y), seed)
    forest.fit(features, (y - float(np.mean(y))) / scale)
    cdfs = [_Cdf(dist, w) for dist, w in zip(data.distributions, weight_inactive, strict=True)]
    fractions = []
    for tree in forest.estimators_:
        main, total = _tree_variances(tree.tree_, cdfs, d)
        if total > 1e-12:
            fractions.append(np.clip(main / total, 0.0, 1.0))
    return np.mean(fractions, axis=0) if fractions else np.zeros(d)


class _Cdf:
    """The cumulative distribution function of one coordinate's measure, vectorised.

    Uniform on [0, 1] for numeric parameters; uniform over the cell centres ``(i + 0.5) / k``
    for categorical ones; with mass ``w_inactive`` at :data:`INACTIVE` when some trials lack
    the parameter.
    """

    def __init__(self, dist: Distribution, w_inactive: float) -> None:
        self.k = len(dist.choices) if isinstance(dist, (Categorical, Bool)) else 0
        self.w = float(w_inactive)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.k:
            active = np.clip(np.floor(x * self.k + 0.5), 0, self.k) / self.k
        else:
            active = np.clip(x, 0.0, 1.0)
        if self.w == 0.0:
            return np.asarray(active)
        return np.asarray(self.w * (x >= INACTIVE) + (1.0 - self.w) * active)


def _leaf_boxes(tree: Any, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, value)`` of every leaf: the leaf is the box ``prod_j (lo_j, hi_j]``.

    Walks the tree one depth level at a time, every node of a level at once.
    """
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    n_nodes = left.shape[0]
    lo = np.full((n_nodes, d), -np.inf)
    hi = np.full((n_nodes, d), np.inf)
    level = np.array([0])
    while level.size:
        split = level[left[level] >= 0]
        if not split.size:
            break
        f, t = feature[split], threshold[split]
        lc, rc = left[split], right[split]
        lo[lc], hi[lc] = lo[split], hi[split]
        lo[rc], hi[rc] = lo[split], hi[split]
        hi[lc, f] = t  # sklearn sends x <= threshold left
        lo[rc, f] = t
        level = np.concatenate([lc, rc])
    leaves = left < 0
    return lo[leaves], hi[leaves], tree.value[leaves, 0, 0].astype(float)


def _tree_variances(tree: Any, cdfs: Sequence[_Cdf], d: int) -> tuple[np.ndarray, float]:
    """The main-effect variance of each coordinate and the total variance of one tree."""
    lo, hi, v = _leaf_boxes(tree, d)
    mass = np.empty_like(lo)
    for j, cdf in enumerate(cdfs):
        mass[:, j] = cdf(hi[:, j]) - cdf(lo[:, j])
    mass = np.clip(mass, 0.0, 1.0)
    p = mass.prod(axis=1)
    f0 = float(p @ v)
    total = float(p @ (v * v)) - f0 * f0
    main = np.zeros(d)
    splits = tree.feature[tree.children_left >= 0]
    thresholds = tree.threshold[tree.children_left >= 0]
    for j in range(d):
        cuts = np.unique(thresholds[splits == j])
        if not cuts.size:
            continue  # the tree ignores this coordinate: its marginal is constant
        edges = np.concatenate([[-np.inf], cuts, [np.inf]])
        cell_mass = np.diff(np.concatenate([[0.0], cdfs[j](cuts), [1.0]]))
        # Each leaf covers the cells [start, end) along j; the marginal on a cell is the sum of
        # the covering leaves' values weighted by their mass in the other coordinates.
        start = np.searchsorted(edges, lo[:, j], side="left")
        end = np.searchsorted(edges, hi[:, j], side="left")
        others = np.prod(np.delete(mass, j, axis=1), axis=1)
        w = v * others
        n_cells = edges.size - 1
        diff = np.bincount(start, w, minlength=n_cells + 1) - np.bincount(end, w, minlength=n_cells + 1)
        marginal = np.cumsum(diff)[:n_cells]
        main[j] = max(float(cell_mass @ (marginal * marginal)) - f0 * f0, 0.0)
    return main, max(total, 0.0)


# --------------------------------------------------------------------------------------------
# PED-ANOVA


def _ped_anova(data: _Data, direction: str) -> np.ndarray:
    """Per parameter, the Pearson divergence of its top-quantile distribution from all trials'."""
    n = data.y.shape[0]
    if n == 0 or np.all(data.y == data.y[0]):
        return np.zeros(len(data.names))  # no top trials when every value is the same (the order would be by number)
    n_top = max(2, int(math.ceil(TOP_QUANTILE * n))) if n >= 4 else 1
    sign = 1.0 if direction == "minimize" else -1.0
    order = np.argsort(sign * data.y, kind="stable")
    is_top = np.zeros(n, dtype=bool)
    is_top[order[:n_top]] = True
    out = np.zeros(len(data.names))
    for j, dist in enumerate(data.distributions):
        out[j] = _pearson(data.X[:, j], is_top, dist)
    return out


def _pearson(x: np.ndarray, is_top: np.ndarray, dist: Distribution) -> float:
    """``sum_b p_top(b)^2 / p_all(b) - 1`` over the cells of one coordinate.

    Cells: the choices of a categorical (or the values of an integer with at most
    :data:`N_BINS` of them), else :data:`N_BINS` bins of [0, 1] smoothed by a Gaussian kernel
    (see :func:`_bandwidth`; reflected at the ends); plus one "inactive" cell when some trials lack
    the parameter. ``p_top^2`` is estimated without each trial's pairing with itself (the
    unbiased U-statistic), so a parameter that does not matter scores about 0 rather than
    about ``cells / n_top``; negative estimates count as 0.
    """
    inactive = np.isnan(x)
    k = _n_cells(dist)
    discrete = 0 < k <= N_BINS
    n_cells = k if discrete else N_BINS
    cell = np.full(x.shape[0], n_cells, dtype=np.int64)  # the inactive cell
    xa = x[~inactive]
    cell[~inactive] = np.clip(np.floor(xa * n_cells), 0, n_cells - 1).astype(np.int64)
    counts_all = np.bincount(cell, minlength=n_cells + 1).astype(float)
    counts_top = np.bincount(cell[is_top], minlength=n_cells + 1).astype(float)
    m = float(counts_top.sum())
    n = float(counts_all.sum())
    if m < 2:
        return 0.0
    if discrete:
        p_all = counts_all / n
        sq_top = counts_top * (counts_top - 1.0) / (m * (m - 1.0))  # unbiased p_top(b)^2
    else:
        n_active, m_active = n - counts_all[-1], m - counts_top[-1]
        p_all = np.append(counts_all[:-1] @ _kernel_matrix(_bandwidth(max(n_active, 1.0))), counts_all[-1]) / n
        # sum_i sum_j K_i K_j over i != j = (sum_i K_i)^2 - sum_i K_i^2, per bin
        kern_top = _kernel_matrix(_bandwidth(max(m_active, 1.0)))
        s = counts_top[:-1] @ kern_top
        s2 = counts_top[:-1] @ (kern_top * kern_top)
        sq = np.append(s * s - s2, counts_top[-1] * (counts_top[-1] - 1.0))
        sq_top = sq / (m * (m - 1.0))
    keep = p_all > 0
    return max(float(np.sum(sq_top[keep] / p_all[keep])) - 1.0, 0.0)


def _bandwidth(n: float) -> float:
    """Kernel bandwidth on [0, 1] for ``n`` points: Scott's rule for the spread of a uniform
    distribution, halved, at least one bin wide.

    It depends on the count only, not on the points' spread: the top trials are often
    multimodal (both ends of a range), where a spread-based rule smooths the modes away. The
    narrower kernel's noise adds no bias, thanks to the U-statistic.
    """
    return float(np.clip(0.5 * 1.06 / math.sqrt(12.0) * n ** -0.2, 1.0 / N_BINS, 0.5))


def _kernel_matrix(h: float) -> np.ndarray:
    """Row b: the Gaussian kernel (bandwidth ``h`` in unit coordinates) of a point in bin b over
    the bins, mass that falls off an end reflected back in; each row sums to 1."""
    radius = int(math.ceil(3.0 * h * N_BINS))
    offsets = np.arange(-radius, radius + 1) / N_BINS
    kern = np.exp(-0.5 * (offsets / h) ** 2)
    kern /= kern.sum()
    rows = np.pad(np.eye(N_BINS), ((0, 0), (radius, radius)), mode="symmetric")
    return np.stack([np.convolve(r, kern, mode="valid") for r in rows])


def _join(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _percent(x: float) -> str:
    return f"{round(100 * x):d}%" if x >= 0.1 or x == 0 else f"{100 * x:.2g}%"
