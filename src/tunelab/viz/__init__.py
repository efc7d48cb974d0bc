"""Plots of a study (plotly) and the self-contained HTML report.

An optional layer: it needs ``pip install 'tunelab[report]'`` (plotly < 6 and kaleido 0.2.1, which
renders static images without a browser). Every figure function returns a plotly ``go.Figure``;
one with nothing to draw says so in its middle (``fig.layout.meta["empty"]``).
"""

from tunelab.viz.curves import plot_curves, plot_lr_range, reported_metrics
from tunelab.viz.export import save_image
from tunelab.viz.figures import (
    default_contour_pair,
    plot_contour,
    plot_history,
    plot_importance,
    plot_parallel_coordinates,
    plot_slice,
)
from tunelab.viz.pareto import pareto_tradeoff_table, plot_hypervolume_history, plot_pareto_front
from tunelab.viz.stages import plot_stages

__all__ = [
    "default_contour_pair",
    "pareto_tradeoff_table",
    "plot_contour",
    "plot_curves",
    "plot_history",
    "plot_hypervolume_history",
    "plot_importance",
    "plot_lr_range",
    "plot_parallel_coordinates",
    "plot_pareto_front",
    "plot_slice",
    "plot_stages",
    "reported_metrics",
    "save_image",
]
