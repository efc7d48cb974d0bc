"""Write ``tunelab-schema1.db`` and ``tunelab-schema1.json``: a database as tunelab's schema 1 wrote it.

Run once, with the tunelab release that wrote schema 1 (commit 6857f6c), to make the fixture the
migration tests open with today's code; running it with a newer tunelab writes a newer schema::

    PYTHONPATH=src python tests/data/make_tunelab_schema1_db.py

The JSON file holds what that tunelab read back from the database (every trial with its params,
distributions, attributes and curves), for the tests to compare against after the upgrade.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import tunelab
from tunelab.samplers import RandomSampler
from tunelab.storage import SQLStorage

HERE = Path(__file__).parent
DB = HERE / "tunelab-schema1.db"


def objective(trial: tunelab.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 4)
    act = trial.suggest_categorical("activation", ["relu", "gelu", "tanh"])
    trial.set_user_attr("note", {"n": trial.number, "act": act})
    for step in range(3):
        loss = 1.0 / (step + 1) + lr * layers
        trial.report(step, val_loss=loss, train_loss=loss * 0.9)
    if trial.number == 3:
        trial.report(3, val_loss=math.nan, grad_norm=math.inf)
        raise tunelab.TrialPruned()
    if trial.number == 4:
        raise ValueError("a made-up failure")
    return lr * layers


def main() -> None:
    if DB.exists():
        sys.exit(f"{DB} exists: remove it first")
    url = f"sqlite:///{DB}"
    study = tunelab.create_study(
        name="schema1-study", storage=url, direction="minimize", sampler=RandomSampler(), seed=7,
        user_attrs={"owner": "migration test", "nested": {"a": [1, 2.5, None]}}, artifact_dir=HERE / "artifacts",
    )
    study.set_system_attr("custom", "kept")
    study.optimize(objective, n_trials=6, show_progress=False)
    study.enqueue({"lr": 0.01, "layers": 2, "activation": "relu"}, user_attrs={"queued": True})
    other = tunelab.create_study(name="other", storage=url, direction="maximize", sampler=RandomSampler(), seed=1,
                                 artifact_dir=HERE / "artifacts")
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2, show_progress=False)
    storage = SQLStorage(url, create=False)
    dump = {}
    for summary in storage.list_studies():
        record = storage.get_study(summary.name)
        dump[record.name] = {
            "direction": record.direction, "seed": record.seed, "user_attrs": record.user_attrs,
            "system_attrs": record.system_attrs,
            "trials": [
                {
                    "number": t.number, "state": t.state.value, "value": t.value, "params": t.params,
                    "distributions": {k: d.to_json() for k, d in t.distributions.items()},
                    "user_attrs": t.user_attrs, "system_attrs": t.system_attrs, "error": t.error,
                    "datetime_start": None if t.datetime_start is None else t.datetime_start.isoformat(),
                    "datetime_complete": None if t.datetime_complete is None else t.datetime_complete.isoformat(),
                    "curves": storage.get_curves(t.trial_id),
                }
                for t in storage.get_trials(record.study_id)
            ],
        }
    storage.close()
    DB.with_suffix(".json").write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
