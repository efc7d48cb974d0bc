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


@pytest.mark.parametrize(
    "make", [tunelab.GPSampler, tunelab.TPESampler, lambda: tunelab.TPESampler(multivariate=False)],
    ids=["gp", "tpe", "tpe-univariate"],
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
