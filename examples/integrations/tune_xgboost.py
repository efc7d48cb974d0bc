"""Tune XGBoost with tunelab: every boosting round is reported, hopeless trials stop early.

Run:  .venv/bin/python examples/integrations/tune_xgboost.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import tunelab
from tunelab.integrations.xgboost import TunelabCallback

X, y = load_breast_cancer(return_X_y=True)
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
dtrain = xgb.DMatrix(X_train, label=y_train)
dvalid = xgb.DMatrix(X_valid, label=y_valid)


def objective(trial: tunelab.Trial) -> float:
    params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "eta": trial.suggest_float("eta", 1e-3, 1.0, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "nthread": 1,
    }
    callback = TunelabCallback(trial, "validation-logloss")
    xgb.train(params, dtrain, num_boost_round=60, evals=[(dtrain, "train"), (dvalid, "validation")],
              verbose_eval=False, callbacks=[callback])
    return callback.best_score  # the best round's validation logloss


def main(storage: str = "sqlite:///xgboost.db", n_trials: int = 20) -> tunelab.Study:
    # Rungs at rounds 3, 9 and 27: at each, a trial goes on if it is in the best third so far.
    pruner = tunelab.SuccessiveHalvingPruner(min_resource=3, reduction_factor=3, metric="validation-logloss")
    study = tunelab.create_study(name="xgboost", storage=storage, direction="minimize", seed=0,
                                 pruner=pruner, load_if_exists=True)
    study.optimize(objective, n_trials=n_trials)
    pruned = len(study.get_trials([tunelab.TrialState.PRUNED]))
    print(f"{len(study.trials)} trials, {pruned} pruned")
    print(f"best validation logloss {study.best_value:.4f} with {study.best_params}")
    return study


if __name__ == "__main__":
    main()
