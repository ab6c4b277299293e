"""The results of an evaluation, without torch: the ``rtsr.evaluate`` document
(:mod:`~rtsr.results.schema`: its fields, reading and writing it) and the metric
specification (:mod:`~rtsr.results.metrics`). Evaluation, the leaderboard, the Hub code and
the CLI all read them from here."""

from rtsr.results.metrics import IMAGE_METRICS, METRICS, Metric, metric
from rtsr.results.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    Evaluation,
    SubmissionRecord,
    read_evaluation,
    write_evaluation,
)

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Evaluation",
    "Metric",
    "SubmissionRecord",
    "metric",
    "read_evaluation",
    "write_evaluation",
]
