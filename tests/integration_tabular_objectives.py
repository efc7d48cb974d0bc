"""Objectives of the Keras, XGBoost and LightGBM integration tests (worker processes import them).

Each trains a tiny model on scikit-learn's breast cancer data with the integration's callback,
stores what the framework itself logged as the user attribute ``logged`` (so that a test compares
it with the reported curves) and returns the best validation loss. The learning rate is the one
parameter: a first trial at a good rate completes, a second at 1e-6 learns nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["KERAS_BACKEND"] = "torch"

from functools import cache
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

import tunelab

EPOCHS = 6
ROUNDS = 8


@cache
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised features, split 400 / 169 (fixed)."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")[order]
    y = y.astype("float32")[order]
    return x[:400], y[:400], x[400:], y[400:]


class Watching(tunelab.Pruner):
    """Stops nothing; records the metric the study asks it to decide on, at each step (as ``(step, metric)``)."""

    def __init__(self, metric: str | None = None, direction: str | None = None) -> None:
        super().__init__(metric=metric, direction=direction)
        self.decided: list[tuple[int, str]] = []

    def decide(self, history: Any, number: int, metric: str, curve: Any) -> None:
        self.decided.append((max(curve), metric))
        return None


def learning_rate(trial: tunelab.Trial) -> float:
    return trial.suggest_float("lr", 1e-6, 1.0, log=True)


def keras_objective(trial: tunelab.Trial) -> float:
    import keras
    import torch

    from tunelab.integrations.keras import TunelabCallback

    torch.set_num_threads(1)
    keras.utils.set_random_seed(0)
    x, y, xv, yv = data()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(trial)), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, validation_data=(xv, yv), epochs=EPOCHS, batch_size=100, verbose=0,
                        callbacks=[TunelabCallback(trial, monitor="val_loss")])
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("logged", history.history)
    return float(min(history.history["val_loss"]))


def xgboost_objective(trial: tunelab.Trial) -> float:
    import xgboost as xgb

    from tunelab.integrations.xgboost import TunelabCallback

    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    params: dict[str, Any] = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 3,
                              "eta": learning_rate(trial), "nthread": 1, "seed": 0}
    logged: dict[str, Any] = {}
    callback = TunelabCallback(trial, "validation-logloss")
    xgb.train(params, dtrain, num_boost_round=ROUNDS, evals=[(dtrain, "train"), (dvalid, "validation")],
              evals_result=logged, verbose_eval=False, callbacks=[callback])
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("logged", logged)
    trial.set_user_attr("best_iteration", callback.best_iteration)
    assert callback.best_score is not None
    return callback.best_score


def lightgbm_objective(trial: tunelab.Trial) -> float:
    import lightgbm as lgb

    from tunelab.integrations.lightgbm import TunelabCallback

    x, y, xv, yv = data()
    dtrain = lgb.Dataset(x, y)
    dvalid = lgb.Dataset(xv, yv, reference=dtrain)
    params: dict[str, Any] = {"objective": "binary", "metric": "binary_logloss", "learning_rate": learning_rate(trial),
                              "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1, "verbose": -1, "seed": 0}
    logged: dict[str, Any] = {}
    callback = TunelabCallback(trial, "binary_logloss", valid_name="valid")
    lgb.train(params, dtrain, num_boost_round=ROUNDS, valid_sets=[dtrain, dvalid], valid_names=["train", "valid"],
              callbacks=[lgb.record_evaluation(logged), callback])
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("logged", logged)
    trial.set_user_attr("best_iteration", callback.best_iteration)
    assert callback.best_score is not None
    return callback.best_score


# -- what the three test files share -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run examples/integrations/tune_<name>.py as a user would, in ``cwd`` (not <name>.py: a script's
    folder comes first on sys.path, so a script named xgboost.py would import itself as xgboost)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "examples" / "integrations" / f"tune_{name}.py")], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def page_python_blocks(name: str) -> list[str]:
    """The ```python blocks of docs/integrations/<name>.md."""
    text = (ROOT / "docs" / "integrations" / f"{name}.md").read_text()
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def example_text(name: str) -> str:
    return (ROOT / "examples" / "integrations" / f"tune_{name}.py").read_text()
