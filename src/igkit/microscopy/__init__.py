"""The multi-channel, multi-label microscopy workflow of the Human Protein Atlas notebook.

* :mod:`igkit.microscopy.synthetic`: HPA-like synthetic cells (RGBY) whose class is the
  compartment holding the green protein signal, with ground-truth masks (NumPy only);
* :mod:`igkit.microscopy.model`: the small multi-label CNN trained on them (PyTorch), shipped
  as ``igkit.load_model("hpa_synthetic")``;
* :mod:`igkit.microscopy.evaluate`: does the attribution fall where the signal is? In-mask share
  of positive attribution and the pointing game, for IG, plain gradients and a random map.

Importing this package imports neither PyTorch nor matplotlib.
"""
