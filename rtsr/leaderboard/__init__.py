"""The leaderboard: results and their display, without torch.

* :mod:`~rtsr.leaderboard.columns`: the columns (:data:`COLUMNS`) that every view reads.
* The results it shows, re-exported from :mod:`rtsr.results`: the ``rtsr.evaluate`` document
  and the metric specification (:data:`METRICS`).
* :mod:`~rtsr.leaderboard.sources`: where rows come from (the official table, folders of
  documents), as a list of sources.
* :mod:`~rtsr.leaderboard.table`: selecting rows, test sets, the Pareto front, the CSV.
* :mod:`~rtsr.leaderboard.plot`: the figure of score or PSNR against runtime.

A leaderboard with the bundled sources and a submissions store's results::

    from rtsr.leaderboard import EvaluationFolder, default_sources, load_leaderboard

    sources = [*default_sources(), EvaluationFolder("Submissions", "store/results", recursive=True)]
    frame, problems = load_leaderboard(sources)
"""

from typing import Any

from rtsr.leaderboard.columns import COLUMNS, Column, column, empty_leaderboard
from rtsr.leaderboard.sources import (
    EVALUATIONS_DIR,
    LEADERBOARD_DIR,
    OFFICIAL_CSV,
    EvaluationFolder,
    FollowedFolder,
    Loaded,
    OfficialTable,
    Source,
    default_sources,
    load_leaderboard,
)
from rtsr.leaderboard.table import datasets, filter_leaderboard, pareto_front, shown_table, to_csv
from rtsr.results.metrics import IMAGE_METRICS, METRICS, Metric, metric
from rtsr.results.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    Evaluation,
    SubmissionRecord,
    read_evaluation,
    write_evaluation,
)

#: The figure's names, imported on first use: plotly is needed to draw, not to read results
#: (the evaluation worker writes documents through the schema on hosts without plotly).
_PLOT_NAMES = frozenset({"EMPTY_MESSAGE", "PARETO_NAME", "REFERENCE_NAME", "leaderboard_figure", "score_levels"})


def __getattr__(name: str) -> Any:
    if name in _PLOT_NAMES:
        from rtsr.leaderboard import plot

        return getattr(plot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COLUMNS",
    "EMPTY_MESSAGE",
    "EVALUATIONS_DIR",
    "IMAGE_METRICS",
    "LEADERBOARD_DIR",
    "METRICS",
    "OFFICIAL_CSV",
    "PARETO_NAME",
    "REFERENCE_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Column",
    "Evaluation",
    "EvaluationFolder",
    "FollowedFolder",
    "Loaded",
    "Metric",
    "OfficialTable",
    "Source",
    "SubmissionRecord",
    "column",
    "datasets",
    "default_sources",
    "empty_leaderboard",
    "filter_leaderboard",
    "leaderboard_figure",
    "load_leaderboard",
    "metric",
    "pareto_front",
    "read_evaluation",
    "score_levels",
    "shown_table",
    "to_csv",
    "write_evaluation",
]
