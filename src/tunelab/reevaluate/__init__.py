"""Re-evaluating a stale study: re-run its best configurations after the data or the code changed.

:func:`reevaluate` (in :mod:`~tunelab.reevaluate.reevaluation`) runs the best configurations of an
old study again in a linked new study and gives each a verdict (holds, better, stale, failed);
:mod:`~tunelab.reevaluate.stats` holds the statistics behind the verdicts.
"""

from tunelab.reevaluate.reevaluation import (
    BACKLINK_KEY,
    LINK_KEY,
    VERDICTS,
    ReevaluatedConfig,
    Reevaluation,
    reevaluate,
)

__all__ = ["BACKLINK_KEY", "LINK_KEY", "VERDICTS", "ReevaluatedConfig", "Reevaluation", "reevaluate"]
