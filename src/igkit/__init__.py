"""igkit: Integrated Gradients for image classifiers, with completeness checked.

``import igkit`` imports no deep-learning framework and no matplotlib: backends, model loaders
and figures import theirs when first used.
"""

from igkit.api import gradients as gradients
from igkit.api import integrated_gradients as integrated_gradients
from igkit.core.engine import NotConvergedWarning as NotConvergedWarning
from igkit.core.engine import NothingToAttributeWarning as NothingToAttributeWarning
from igkit.core.engine import OutputTransformWarning as OutputTransformWarning
from igkit.core.quadrature import available_methods as available_methods
from igkit.core.quadrature import nodes_and_weights as nodes_and_weights
from igkit.core.result import PathTrace as PathTrace
from igkit.core.result import Result as Result
from igkit.core.strategies import SecantFallbackWarning as SecantFallbackWarning
from igkit.core.targets import labels_above as labels_above
from igkit.methods import attribute as attribute
from igkit.methods import attribution_methods as attribution_methods
from igkit.models.sources import load_model as load_model
from igkit.process import keep_freed_memory as keep_freed_memory
from igkit.workflow import ExplainSettings as ExplainSettings
from igkit.workflow import InputError as InputError
from igkit.workflow import explain as explain
from igkit.workflow import model_inputs as model_inputs

__version__ = "0.1.0"
