"""One explanation workflow for the command line, dataset runs and notebooks.

``inputs`` (photo files, per-channel microscopy examples, arrays) -> :class:`Explainer`
(model loaded once; inputs read, predicted and their targets chosen, then attributed) ->
:class:`Explanation` records -> :class:`OutputFolder` (npz files, figures, ``summary.csv``).
``igkit explain``, ``igkit demo``, microscopy mode, ``igkit explain-dataset`` (local and Ray) and
:func:`igkit.explain` are thin front ends over it; :class:`ExplainSettings` is the one typed
settings object they all build.

Only NumPy is imported here; models, frameworks and matplotlib load when used.
"""

from igkit.workflow.explainer import Explainer as Explainer
from igkit.workflow.explainer import Explanation as Explanation
from igkit.workflow.explainer import Prediction as Prediction
from igkit.workflow.explainer import TargetExplanation as TargetExplanation
from igkit.workflow.explainer import Variant as Variant
from igkit.workflow.inputs import Input as Input
from igkit.workflow.inputs import InputError as InputError
from igkit.workflow.inputs import array_inputs as array_inputs
from igkit.workflow.inputs import channel_inputs as channel_inputs
from igkit.workflow.inputs import photo_inputs as photo_inputs
from igkit.workflow.notebook import Explanations as Explanations
from igkit.workflow.notebook import explain as explain
from igkit.workflow.notebook import model_inputs as model_inputs
from igkit.workflow.outputs import OutputFolder as OutputFolder
from igkit.workflow.settings import ExplainSettings as ExplainSettings
from igkit.workflow.settings import TargetSpec as TargetSpec

__all__ = [
    "ExplainSettings",
    "Explainer",
    "Explanation",
    "Explanations",
    "Input",
    "InputError",
    "OutputFolder",
    "Prediction",
    "TargetExplanation",
    "TargetSpec",
    "Variant",
    "array_inputs",
    "channel_inputs",
    "explain",
    "model_inputs",
    "photo_inputs",
]
