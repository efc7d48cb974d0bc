"""The start-up hook a ``wandb: true`` sweep puts on its trials' PYTHONPATH (see :mod:`.sitecustomize`)."""
