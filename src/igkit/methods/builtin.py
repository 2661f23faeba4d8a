"""The built-in attribution methods: importing this module registers them all.

One module per family, each registering its methods with ``register_method``:

* ``gradient``: integrated_gradients (and its rule names), saliency, input_x_gradient;
* ``noise``: smoothgrad, vargrad and the ``noise=`` option wrapping any method;
* ``shap``: expected_gradients, deeplift, deeplift_shap;
* ``perturbation``: occlusion, feature_ablation, feature_permutation, shapley_sampling;
* ``layers``: grad_cam, guided_backprop, deconvnet, guided_grad_cam and the layer methods;
* ``paths``: blur_ig, guided_ig, idgi, xrai;
* ``controls``: random and sobel, attributions that explain nothing (for ``igkit evaluate``).
"""

from __future__ import annotations

import importlib

_FAMILIES = ("gradient", "noise", "shap", "perturbation", "layers", "paths", "controls")

for _family in _FAMILIES:
    importlib.import_module(f"igkit.methods.{_family}")
