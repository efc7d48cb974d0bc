"""Babysitting one run: its branches and roll-backs, the run's tree, suggestions and automatic rules.

A *run* is a study whose trials are the branches of one training run (see ``tunelab.live``):
:func:`create_run` starts one, :func:`set_live` changes a running branch's hyperparameters,
:func:`request_stop` asks a trial to stop, :func:`branch` queues a branch from a checkpoint,
:func:`train_run` trains its branches in this process (resuming
one that died), :func:`rollback` goes back to a checkpoint as a new branch, :func:`format_tree`
shows the branches, :func:`suggest` / :func:`accept` read the curves and propose the next nudge,
and :func:`watch` applies automatic rules such as :class:`ReduceOnPlateau`.
"""

from tunelab.babysit.advice import AutoChange, ReduceOnPlateau, Rule, Suggestion, accept, suggest, watch
from tunelab.babysit.branches import BranchNode, format_tree, rollback, run_tree
from tunelab.babysit.control import branch, request_stop, set_live
from tunelab.babysit.run import create_run, resume_dead_branch, train_run

__all__ = [
    "AutoChange",
    "BranchNode",
    "branch",
    "ReduceOnPlateau",
    "Rule",
    "Suggestion",
    "accept",
    "create_run",
    "request_stop",
    "format_tree",
    "resume_dead_branch",
    "rollback",
    "run_tree",
    "set_live",
    "suggest",
    "train_run",
    "watch",
]
