"""Model-based samplers in real worker processes never give two workers the same point (issue 16,
item 13): trials that start within milliseconds of each other plan from the same history, so each
plans the points of the trials still being planned before its own, and counts them as pending."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tunelab
from objectives import styblinski_tang_3d
from tunelab.samplers import ModelBasedSampler
from tunelab.samplers.model_based import EncodedSpace

pytestmark = pytest.mark.slow


_GP_UNDER_LOAD = pytest.mark.xfail(
    strict=False,
    reason="open (issue 16, item 13): on a heavily loaded machine (load 8+) a trial can still finish planning "
    "between another's plan-ahead and its own, and two GP proposals then coincide (seen in 2 of about 8 runs; "
    "0 of 6 at normal load); the deterministic test in test_model_based_samplers.py pins the mechanism",
)


@pytest.mark.parametrize(
    "make", [pytest.param(tunelab.GPSampler, marks=_GP_UNDER_LOAD), tunelab.TPESampler], ids=["gp", "tpe"]
)
def test_four_workers_never_propose_the_same_point(tmp_path: Path, make: Callable[[], ModelBasedSampler]) -> None:
    url = f"sqlite:///{tmp_path / 'proposals.db'}"
    study = tunelab.create_study(name="p", storage=url, sampler=make(), seed=1)
    study.optimize(styblinski_tang_3d, n_trials=40, n_workers=4)
    trials = study.trials
    assert len(trials) == 40 and all(t.state == tunelab.TrialState.COMPLETE for t in trials)
    encoded = EncodedSpace(trials[0].distributions)  # the samplers' own unit coordinates
    rows = {t.number: encoded.encode(t.params) for t in trials}
    close = [(a, b, float(np.max(np.abs(rows[a] - rows[b])))) for a, b in itertools.combinations(rows, 2)
             if np.max(np.abs(rows[a] - rows[b])) < 1e-3]
    assert close == [], f"trials closer than 1e-3 in the unit cube (numbers, max-norm distance): {close}"
