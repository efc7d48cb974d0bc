"""The engine: studies, the live trial and the loop that runs trials.

``tunelab.study`` is one package. Its modules may import each other (the Study starts
Trials, the runner loads Studies in worker processes); nothing outside imports their
internals, only the names re-exported here:

- :mod:`~tunelab.study.study`: :class:`Study`; :mod:`~tunelab.study.factory`: :func:`create_study`,
  :func:`load_study`, :func:`read_study`, :func:`delete_study`; :mod:`~tunelab.study.copy`: :func:`copy_study`;
  :mod:`~tunelab.study.verdict`: judging returned values
- :mod:`~tunelab.study.trial`: :class:`Trial`, the object an objective receives
- :mod:`~tunelab.study.services`: what a Trial may ask of its study (suggestions, pruning, a writer)
- :mod:`~tunelab.study.runner`: one trial's life (:func:`~tunelab.study.runner.run_trial`) and the optimize loops
- :mod:`~tunelab.study.heartbeat`: signs of life of running trials, failing lost ones
- :mod:`~tunelab.study.progress`, :mod:`~tunelab.study.frames`: the progress bar, trials as a DataFrame
- :mod:`~tunelab.study.headline`: what a list of studies shows of each (best trial, or front size)
"""

from tunelab.study.copy import copy_study
from tunelab.study.factory import create_study, delete_study, load_study, read_study
from tunelab.study.headline import StudyHeadline, study_headline
from tunelab.study.runner import pack_for_workers
from tunelab.study.study import Callback, Objective, Study, find_best_trial
from tunelab.study.trial import PREDICTION, STOPPED_RULE, Trial

__all__ = [
    "PREDICTION",
    "STOPPED_RULE",
    "StudyHeadline",
    "Callback",
    "Objective",
    "Study",
    "Trial",
    "copy_study",
    "create_study",
    "delete_study",
    "find_best_trial",
    "load_study",
    "pack_for_workers",
    "read_study",
    "study_headline",
]
