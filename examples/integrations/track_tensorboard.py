"""Every trial a TensorBoard run, and the HParams table: a small scikit-learn classifier tuned on digits.

Run it, then look at the runs with the ``tensorboard --logdir`` command it prints.
"""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tunelab
from tunelab.integrations.tensorboard import TensorBoardCallback

log_dir = tempfile.mkdtemp()
cb = TensorBoardCallback(log_dir, metric_name="val_error_final")

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)


def objective(trial: tunelab.Trial) -> float:
    model = SGDClassifier(
        loss=trial.suggest_categorical("loss", ["hinge", "log_loss"]),
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        eta0=trial.suggest_float("eta0", 1e-3, 1.0, log=True),
        learning_rate="constant",
        random_state=0,
    )
    for epoch in range(8):
        model.partial_fit(X_train, y_train, classes=np.arange(10))
        error = 1.0 - model.score(X_val, y_val)
        cb.report(trial, epoch, val_error=error)  # trial.report, and the scalar in TensorBoard now
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return error


study = tunelab.create_study(name="digits-sgd", seed=0, pruner=tunelab.MedianPruner(n_startup_trials=3))
study.optimize(objective, n_trials=8, callbacks=[cb])

for trial in study.trials:
    run = EventAccumulator(str(cb.run_dir(trial.number)))
    run.Reload()
    points = run.Scalars("val_error")
    print(f"trial-{trial.number} {trial.state.value}: {len(points)} val_error points, "
          f"last {points[-1].value:.3f} at step {points[-1].step}")
print(f"best: {study.best_value:.3f} with {study.best_params}")
print(f"look at them: tensorboard --logdir {log_dir}")
