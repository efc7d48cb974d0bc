"""Tune a scikit-learn pipeline with TunelabSearchCV: RandomizedSearchCV's API, tunelab's search.

Run:  OMP_NUM_THREADS=1 python examples/integrations/tune_sklearn.py
(Not named sklearn.py: a script of that name would shadow the sklearn package it imports.)
It writes sklearn-search.db (the study: open it with `tunelab dashboard --storage sqlite:///sklearn-search.db`).
"""

from __future__ import annotations

import scipy.stats
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import tunelab
from tunelab.integrations.sklearn import TunelabSearchCV

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

pipeline = Pipeline([
    ("scale", StandardScaler()),
    ("pca", PCA(random_state=0)),
    ("clf", LogisticRegression(max_iter=300)),
])
param_distributions = {
    "pca__n_components": tunelab.Int(8, 48),            # a tunelab distribution
    "clf__C": scipy.stats.loguniform(1e-5, 1e2),         # scipy's: mapped to Float(1e-5, 1e2, log=True)
    "clf__class_weight": [None, "balanced"],            # a list: categorical
}
search = TunelabSearchCV(
    pipeline,
    param_distributions,
    n_trials=16,
    cv=5,
    n_workers=1,                                         # candidates per batch, joblib n_jobs of the fits
    pruner=tunelab.MedianPruner(n_startup_trials=3),     # stop hopeless candidates after a fold or two
    storage="sqlite:///sklearn-search.db",
    study_name="digits-pipeline",
    random_state=0,
)
search.fit(X_train, y_train)

states = [t.state.value for t in search.trials_]
print(f"trials: {len(states)}, complete: {states.count('COMPLETE')}, pruned: {states.count('PRUNED')}")
print(f"folds fitted: {sum(search.cv_results_['n_splits_run'])} of {len(states) * search.n_splits_}")
print(f"best params: {search.best_params_}")
print(f"best cv accuracy: {search.best_score_:.4f}")
print(f"test accuracy: {search.score(X_test, y_test):.4f}")
