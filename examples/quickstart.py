"""Tune a linear classifier trained by SGD on scikit-learn's digits, with learning curves.

Run:  .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import tunelab

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def objective(trial: tunelab.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    alpha = trial.suggest_float("weight_decay", 1e-7, 1e-1, log=True)
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"])
    model = SGDClassifier(loss=loss, alpha=alpha, learning_rate="constant", eta0=lr, random_state=0)
    classes = np.unique(y_train)
    for epoch in range(8):
        model.partial_fit(X_train, y_train, classes=classes)
        trial.report(epoch, train_acc=model.score(X_train, y_train), val_acc=model.score(X_val, y_val))
    return float(model.score(X_val, y_val))


def main(storage: str = "sqlite:///quickstart.db", n_trials: int = 30) -> tunelab.Study:
    study = tunelab.create_study(name="quickstart", storage=storage, direction="maximize", seed=0,
                                 load_if_exists=True)
    study.optimize(objective, n_trials=n_trials, n_workers=2)
    print(f"best validation accuracy {study.best_value:.3f} with {study.best_params}")
    return study


if __name__ == "__main__":
    main()
