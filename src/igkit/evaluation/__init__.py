"""``igkit evaluate``'s library: which attribution method explains a model best, on a dataset.

:mod:`~igkit.evaluation.job` computes methods x metrics for batches of examples (one
:class:`Evaluator` holding the model), :mod:`~igkit.evaluation.run` runs it over an image
folder, a manifest or an ``explain-dataset`` store, locally or on Ray, and
:mod:`~igkit.evaluation.outputs` writes the table and figures.
"""

from igkit.evaluation.job import (
    CONTROLS,
    EvaluatedBatch,
    EvaluateSettings,
    Evaluator,
    parse_methods,
    parse_metrics,
)
from igkit.evaluation.outputs import write_evaluation
from igkit.evaluation.run import EvaluationSource, open_source, run_evaluation

__all__ = [
    "CONTROLS",
    "EvaluateSettings",
    "EvaluatedBatch",
    "EvaluationSource",
    "Evaluator",
    "open_source",
    "parse_methods",
    "parse_metrics",
    "run_evaluation",
    "write_evaluation",
]
