"""Population-based training (Jaderberg et al. 2017): a parallel search that babysits itself.

:class:`PopulationBasedTraining` (in :mod:`~tunelab.pbt.population`) is the helper an objective
drives; :mod:`~tunelab.pbt.lineage` reads a population's record back (schedules, family tree).
"""

from tunelab.pbt.lineage import PBT_KEY, format_lineage, params_at, schedule
from tunelab.pbt.population import Exploit, Member, PopulationBasedTraining

__all__ = ["PBT_KEY", "Exploit", "Member", "PopulationBasedTraining", "format_lineage", "params_at", "schedule"]
