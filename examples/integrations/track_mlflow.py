"""Every trial an MLflow run: a small scikit-learn classifier tuned on the digits data set.

Run it, then look at the runs with the ``mlflow ui`` command it prints.
"""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import tunelab
from tunelab.integrations.mlflow import MLflowCallback

folder = tempfile.mkdtemp()
tracking_uri = f"sqlite:///{os.path.join(folder, 'mlflow-example.db')}"
cb = MLflowCallback(tracking_uri=tracking_uri, tags={"data": "digits"})

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)


def objective(trial: tunelab.Trial) -> float:
    model = SGDClassifier(
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        eta0=trial.suggest_float("eta0", 1e-3, 1.0, log=True),
        learning_rate="constant",
        random_state=0,
    )
    for epoch in range(8):
        model.partial_fit(X_train, y_train, classes=np.arange(10))
        error = 1.0 - model.score(X_val, y_val)
        cb.report(trial, epoch, val_error=error)  # trial.report, and the curve in MLflow now
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return error


study = tunelab.create_study(name="digits-sgd", seed=0, pruner=tunelab.MedianPruner(n_startup_trials=3))
study.optimize(objective, n_trials=8, callbacks=[cb])

client = MlflowClient(tracking_uri=tracking_uri)
experiment = client.get_experiment_by_name(study.name)  # the experiment is named after the study
runs = client.search_runs([experiment.experiment_id])
trial_runs = [r for r in runs if r.data.tags["tunelab.role"] == "trial"]
study_runs = [r for r in runs if r.data.tags["tunelab.role"] == "study"]
print(f"trial runs: {len(trial_runs)}, nested under {len(study_runs)} study run")
for run in sorted(trial_runs, key=lambda r: int(r.data.tags["tunelab.trial"])):
    print(run.info.run_name, run.data.tags["tunelab.state"], run.info.status,
          f"val_error={run.data.metrics['val_error']:.3f}")
print(f"best: {study.best_value:.3f} with {study.best_params}")
print(f"look at them: mlflow ui --backend-store-uri {tracking_uri}")
