"""The read-only History view that samplers receive."""

from __future__ import annotations

import tunelab
from tunelab.history import History
from tunelab.records import TrialState


def history_of(study: tunelab.Study) -> History:
    return History(study.storage, study.storage.get_study(study.name))


def test_pending_lists_running_trials_except_the_asking_one() -> None:
    study = tunelab.create_study(seed=0)
    first, second = study.ask(), study.ask()
    first.suggest_float("x", 0, 1)
    first.report(0, loss=1.0)  # params become visible to other workers
    done = study.ask()
    study.tell(done, 1.0)
    pending = history_of(study).pending(exclude=second.number)
    assert [t.number for t in pending] == [first.number]
    assert "x" in pending[0].params


def test_finished_trials_are_cached_and_new_ones_are_seen_after_invalidate() -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    history = history_of(study)
    assert len(history.completed()) == 3
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(history.completed()) == 3  # the view is refreshed once per trial, not per read
    history.invalidate()
    assert len(history.completed()) == 5
    assert [t.number for t in history.top(2)] == [t.number for t in sorted(
        study.get_trials([TrialState.COMPLETE]), key=lambda t: (t.value, t.number))[:2]]
