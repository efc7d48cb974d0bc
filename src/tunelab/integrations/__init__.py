"""tunelab inside the frameworks people already train with: one line added to existing code.

Each integration lives in its own module, imported only when asked for (its framework is an
optional dependency, e.g. ``pip install 'tunelab[lightning]'``):

=====================================  ==========================================================
``tunelab.integrations.lightning``     ``TunelabCallback`` for PyTorch Lightning (DDP included)
``tunelab.integrations.transformers``  ``TunelabCallback`` for the Hugging Face ``Trainer``, ``search``
``tunelab.integrations.keras``         ``TunelabCallback`` for Keras 3
``tunelab.integrations.xgboost``       ``TunelabCallback`` for XGBoost's training API
``tunelab.integrations.lightgbm``      ``TunelabCallback`` for LightGBM's training API
``tunelab.integrations.sklearn``       ``TunelabSearchCV``, a scikit-learn search estimator
``tunelab.integrations.mlflow``        ``MLflowCallback``: every trial an MLflow run
``tunelab.integrations.tensorboard``   ``TensorBoardCallback``: scalars and the HParams table
=====================================  ==========================================================

Every callback reports the framework's metrics as the trial's curves, asks the study's pruner
after each report and, when it says stop, stops the framework's loop cleanly and marks the trial
(:meth:`tunelab.Trial.mark_pruned`): the trial ends PRUNED with its curve whether the objective
then raises :class:`tunelab.TrialPruned` or returns.
"""
