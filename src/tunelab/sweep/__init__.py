"""``tunelab sweep SWEEP.yaml``: a study whose trials are commands.

A sweep file names a command with placeholders, the parameters to tune, the metric the command reports
and how to search; :func:`run_sweep` runs it. The modules, one job each:

- :mod:`~tunelab.sweep.yamlfile`: YAML with the line of every key;
- :mod:`~tunelab.sweep.config`: the file's schema and checks, :class:`SweepConfig`;
- :mod:`~tunelab.sweep.command`: one trial's command line, environment and parameters file;
- :mod:`~tunelab.sweep.metrics`: metrics in printed lines (JSON lines, ``metrics_regex``);
- :mod:`~tunelab.sweep.process`: running one trial's process: streams, logs, pruning, timeouts;
- :mod:`~tunelab.sweep.objective`: :class:`SweepObjective`, the picklable objective the workers run;
- :mod:`~tunelab.sweep.run`: the study, resuming to ``n_trials``, :func:`run_sweep`;
- :mod:`~tunelab.sweep.logs`: the tails of a trial's logs (the CLI, the dashboard);
- :mod:`~tunelab.sweep.template`: ``tunelab sweep --init train.py``.

A script reports by printing JSON lines, or with :mod:`tunelab.script` (no study, no numpy: a light import).
"""

from tunelab.sweep.config import SweepConfig, config_from_text, load_config
from tunelab.sweep.logs import trial_logs
from tunelab.sweep.objective import SweepObjective
from tunelab.sweep.run import SweepSummary, run_sweep

__all__ = ["SweepConfig", "SweepObjective", "SweepSummary", "config_from_text", "load_config", "run_sweep",
           "trial_logs"]
