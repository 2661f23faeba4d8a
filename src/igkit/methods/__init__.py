"""Every attribution method igkit has, by name, on the same engine and backends.

``attribute(model, inputs, method=NAME, ...)`` runs a registered method (``registry``) on a
``MethodContext`` (``context``): the model's session, the inputs, the explanations and batched
gradient and forward calls. ``igkit.integrated_gradients`` and ``igkit.gradients`` stay the
direct calls they were; ``integrated_gradients`` is also a method here.
"""

from igkit.methods.attribute import attribute
from igkit.methods.context import MethodContext
from igkit.methods.registry import (
    MethodSpec,
    Option,
    attribution_methods,
    get_method,
    method_names,
    register_method,
)

__all__ = [
    "MethodContext",
    "MethodSpec",
    "Option",
    "attribute",
    "attribution_methods",
    "get_method",
    "method_names",
    "register_method",
]
