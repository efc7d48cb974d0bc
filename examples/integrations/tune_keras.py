"""Tune a small Keras 3 network with tunelab: every epoch is reported, hopeless trials stop early.

Run:  .venv/bin/python examples/integrations/tune_keras.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")  # any Keras 3 backend works: "tensorflow", "jax", "torch"

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tunelab
from tunelab.integrations.keras import TunelabCallback

if keras.backend.backend() == "torch":
    import torch

    torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X_train, X_valid, y_train, y_valid = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def objective(trial: tunelab.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    units = trial.suggest_int("units", 16, 128, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    keras.utils.set_random_seed(trial.number)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(X_train, y_train, validation_data=(X_valid, y_valid), epochs=9, batch_size=64,
                        verbose=0, callbacks=[TunelabCallback(trial, monitor="val_accuracy")])
    return max(history.history["val_accuracy"])


def main(storage: str = "sqlite:///keras.db", n_trials: int = 12) -> tunelab.Study:
    # Rungs at epochs 1 and 3 (from 0): a trial goes on if its val_accuracy is in the best third.
    pruner = tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, metric="val_accuracy")
    study = tunelab.create_study(name="keras", storage=storage, direction="maximize", seed=0,
                                 pruner=pruner, load_if_exists=True)
    study.optimize(objective, n_trials=n_trials)
    pruned = len(study.get_trials([tunelab.TrialState.PRUNED]))
    print(f"{len(study.trials)} trials, {pruned} pruned")
    print(f"best validation accuracy {study.best_value:.4f} with {study.best_params}")
    return study


if __name__ == "__main__":
    main()
