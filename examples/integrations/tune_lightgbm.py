"""Tune LightGBM with tunelab: every boosting round is reported, hopeless trials stop early.

Run:  .venv/bin/python examples/integrations/tune_lightgbm.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm as lgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import tunelab
from tunelab.integrations.lightgbm import TunelabCallback

X, y = load_breast_cancer(return_X_y=True)
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def objective(trial: tunelab.Trial) -> float:
    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1.0, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 50),
        "num_threads": 1,
        "verbose": -1,
    }
    dtrain = lgb.Dataset(X_train, label=y_train)
    dvalid = lgb.Dataset(X_valid, label=y_valid, reference=dtrain)
    callback = TunelabCallback(trial, "binary_logloss")  # of valid_0, the first of valid_sets
    lgb.train(params, dtrain, num_boost_round=60, valid_sets=[dvalid], callbacks=[callback])
    return callback.best_score  # the best round's validation logloss


def main(storage: str = "sqlite:///lightgbm.db", n_trials: int = 20) -> tunelab.Study:
    # Rungs at iterations 3, 9 and 27: at each, a trial goes on if it is in the best third so far.
    pruner = tunelab.SuccessiveHalvingPruner(min_resource=3, reduction_factor=3)
    study = tunelab.create_study(name="lightgbm", storage=storage, direction="minimize", seed=0,
                                 pruner=pruner, load_if_exists=True)
    study.optimize(objective, n_trials=n_trials)
    pruned = len(study.get_trials([tunelab.TrialState.PRUNED]))
    print(f"{len(study.trials)} trials, {pruned} pruned")
    print(f"best validation logloss {study.best_value:.4f} with {study.best_params}")
    return study


if __name__ == "__main__":
    main()
