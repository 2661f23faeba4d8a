"""Keras (TensorFlow) layers for the layer attribution methods: a named layer's output, read
or replaced, its gradient, and input gradients through a modified ReLU backward.

``igkit.methods.layers`` reaches a Keras model only through ``KerasLayers``; layers are named as
``model.get_layer`` names them (``model.layers``, nested models' layers included by their own
names). The model runs eagerly under a ``tf.GradientTape``:

* A layer's output is caught by swapping the layer instance's ``call`` for one call: the
  wrapper runs the original, watches its output on the tape (or returns the values given to
  replace it, watched) and restores ``call`` afterwards. This works for functional, Sequential
  and subclassed models alike, also where the graph after the layer is not a function of the
  layer alone (a residual connection around it), where a functional split
  ``keras.Model(layer.output, model.output)`` is impossible.
* Guided backprop and DeconvNet swap the ReLUs Keras declares: a layer whose ``activation`` is
  ``keras.activations.relu`` (Conv2D, Dense, Activation("relu"), ...) and plain
  ``keras.layers.ReLU`` layers run a ``tf.custom_gradient`` ReLU for the batch. ReLUs called as
  functions inside a layer's own code cannot be swapped: one trace of the model counts the
  ReLU ops of its graph against the swapped calls, and a model with ReLUs left over (or none
  swappable) is refused by name instead of explained half-guided.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from igkit.backends.base import DisconnectedModelError
from igkit.backends.tensorflow import _output_transform

__all__ = ["KerasLayers"]


def _relu_rule(rule: str, calls: list[int]) -> Any:
    """The ReLU with ``rule``'s backward; each call (also while tracing) counts in ``calls``."""

    @tf.custom_gradient
    def relu(x: Any) -> Any:
        calls[0] += 1

        def grad(dy: Any) -> Any:
            passed = tf.nn.relu(dy)
            if rule == "guided":
                passed = passed * tf.cast(x > 0, dy.dtype)
            return passed

        return tf.nn.relu(x), grad

    return relu


def _sublayers(layer: Any) -> list[Any]:
    """The layers ``layer`` holds directly: a model's ``layers``, and for any Keras layer the
    ones it tracks as attributes (a custom layer's own convolutions)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", []))


def _all_layers(model: Any) -> dict[str, Any]:
    """Every layer by name, breadth first, nested models' and custom layers' own layers
    included (the outermost of two equal names wins)."""
    found: dict[str, Any] = {}
    stack = _sublayers(model)
    while stack:
        layer = stack.pop(0)
        found.setdefault(layer.name, layer)
        stack.extend(_sublayers(layer))
    return found


class KerasLayers:
    """The layers of one Keras model in an open ``TensorFlowSession``.

    Args:
        session: The ``igkit.backends.tensorflow.TensorFlowSession`` of the call (its dtype and
            output transform are used, so scores are the ones the other methods explain).
        model: The Keras model the session runs.
    """

    channel_axis = -1  # Keras convolutions are channels-last: (N, H, W, C)

    def __init__(self, session: Any, model: Any) -> None:
        self._model = model
        self._dtype = tf.as_dtype(session.dtype.name)
        output = session._opts.output
        self._transform = _output_transform(output) or output
        self._layers = _all_layers(model)

    def names(self) -> list[str]:
        """The layer names ``layer=`` takes."""
        return list(self._layers)

    naming = "Keras layer names, as model.get_layer takes them"
    no_layers = (
        "the model has no Keras layers to name (a tf.function or SavedModel signature); "
        "explain a keras.Model, whose layers model.get_layer finds"
    )

    # -- model calls --------------------------------------------------------------------------

    def _scores(self, x: Any) -> Any:
        out = self._transform(self._model(x, training=False))
        if len(out.shape) == 1:
            out = out[:, None]
        return out

    @contextlib.contextmanager
    def _caught(
        self, layer: str, tape: Any, replace: Any | None
    ) -> Iterator[list[Any]]:
        """While active, ``layer``'s output is watched on ``tape`` (or replaced by
        ``replace``, watched) and appended to the list yielded."""
        target = self._layers[layer]
        original = target.call
        caught: list[Any] = []

        def call(*args: Any, **kwargs: Any) -> Any:
            if caught:
                raise ValueError(
                    f"layer {layer!r} runs more than once in a forward pass (a shared layer), "
                    "so its output is not one tensor; choose a layer that runs once"
                )
            out = original(*args, **kwargs)
            if not isinstance(out, tf.Tensor):
                raise ValueError(
                    f"layer {layer!r} returns {type(out).__name__}, not a tensor; choose a "
                    "layer whose output is one tensor"
                )
            if replace is not None:
                if tuple(out.shape) != tuple(replace.shape):
                    raise ValueError(
                        f"layer {layer!r} output has shape {tuple(out.shape)}, the values "
                        f"given to replace it {tuple(replace.shape)}"
                    )
                out = tf.identity(tf.cast(replace, out.dtype))
            if tape is not None:
                tape.watch(out)
            caught.append(out)
            return out

        target.call = call
        try:
            yield caught
        finally:
            del target.call
            if target.call != original:  # a class whose call was an instance attribute
                target.call = original
        if not caught:
            raise ValueError(
                f"layer {layer!r} did not run in the model's forward pass; choose a layer the "
                "forward pass calls"
            )

    def output_shapes(self, point: np.ndarray) -> list[tuple[str, tuple[int, ...]]]:
        """(name, output shape without the batch axis) of every layer with one tensor output,
        in the order a forward pass at ``point`` (one example, batch axis included) calls
        them."""
        seen: list[tuple[str, tuple[int, ...]]] = []

        def recorder(name: str, original: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                out = original(*args, **kwargs)
                if isinstance(out, tf.Tensor):
                    seen.append((name, tuple(int(d) for d in out.shape[1:])))
                return out

            return call

        # A block's (nested model's, custom layer's) call returns after its layers', so it
        # comes after them, as a torch container's hook fires after its children's.
        swapped = []
        for name, layer in self._layers.items():
            swapped.append(layer)
            layer.call = recorder(name, layer.call)
        try:
            self._scores(tf.constant(point, self._dtype))
        finally:
            for layer in swapped:
                del layer.call
        return seen

    def activations(self, layer: str, points: np.ndarray, batch_size: int) -> np.ndarray:
        """Forward only: ``layer``'s output at each point, ``(M, *layer_shape)``."""
        out = []
        for start in range(0, points.shape[0], batch_size):
            with self._caught(layer, None, None) as caught:
                self._scores(tf.constant(points[start : start + batch_size], self._dtype))
            out.append(np.asarray(caught[0].numpy(), dtype=np.float64))
        return np.concatenate(out)

    def _batch(
        self, layer: str, xb: Any, targets: np.ndarray, replace: Any | None
    ) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape, self._caught(layer, tape, replace) as caught:
            scores = self._scores(xb)
            s = tf.gather(scores, tf.constant(targets, tf.int64), axis=1, batch_dims=1)
            total = tf.reduce_sum(s)
        g = tape.gradient(total, caught[0])
        if g is None:
            raise DisconnectedModelError(
                f"the explained output does not depend on layer {layer!r}'s output"
            )
        return caught[0], tf.convert_to_tensor(g), s

    def gradients(
        self,
        layer: str,
        points: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        replace: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``layer``'s output at each point (or ``replace``), the gradient of the point's
        target score with respect to it, and the scores: ``(M, *layer_shape)`` twice, ``(M,)``."""
        acts, grads, scores = [], [], []
        for start in range(0, points.shape[0], batch_size):
            stop = min(points.shape[0], start + batch_size)
            sub = None if replace is None else tf.constant(replace[start:stop], self._dtype)
            a, g, s = self._batch(layer, tf.constant(points[start:stop], self._dtype),
                                  targets[start:stop], sub)
            acts.append(np.asarray(a.numpy(), dtype=np.float64))
            grads.append(np.asarray(g.numpy(), dtype=np.float64))
            scores.append(np.asarray(s.numpy(), dtype=np.float64))
        return np.concatenate(acts), np.concatenate(grads), np.concatenate(scores)

    def scores_replaced(
        self, layer: str, points: np.ndarray, targets: np.ndarray, replace: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """Forward only: the target score at each point with ``layer``'s output replaced."""
        out = []
        for start in range(0, points.shape[0], batch_size):
            stop = min(points.shape[0], start + batch_size)
            with self._caught(layer, None, tf.constant(replace[start:stop], self._dtype)):
                scores = self._scores(tf.constant(points[start:stop], self._dtype))
            s = tf.gather(scores, tf.constant(targets[start:stop], tf.int64), axis=1,
                          batch_dims=1)
            out.append(np.asarray(s.numpy(), dtype=np.float64))
        return np.concatenate(out)

    @contextlib.contextmanager
    def _swapped_relus(self, rule: str, example: np.ndarray) -> Iterator[None]:
        calls = [0]
        relu = _relu_rule(rule, calls)
        import keras
        swapped: list[tuple[Any, str, Any]] = []
        for layer in self._layers.values():
            act = getattr(layer, "activation", None)
            if act is not None and act in (keras.activations.relu, tf.nn.relu):
                swapped.append((layer, "activation", act))
                layer.activation = relu
            elif isinstance(layer, keras.layers.ReLU) and _plain_relu(layer):
                swapped.append((layer, "call", None))
                layer.call = relu
        if not swapped:
            raise ValueError(
                f"the model has no ReLU igkit can swap for the {rule!r} backward (layers with "
                "activation='relu' or keras.layers.ReLU); a ReLU called inside a layer's own "
                "code cannot be swapped. Use method='saliency' for the plain gradient"
            )
        try:
            self._check_all_swapped(rule, example, calls)
            yield
        finally:
            for layer, attr, old in swapped:
                if old is None:
                    del layer.call
                else:
                    setattr(layer, attr, old)

    def _check_all_swapped(self, rule: str, example: np.ndarray, calls: list[int]) -> None:
        """Traces the model once (no compute): a ReLU op in its graph that is not a swapped
        call (``tf.nn.relu`` in a layer's own code) would keep its plain gradient, so the
        model is refused by name rather than explained half-guided."""
        calls[0] = 0
        fn = tf.function(lambda x: self._scores(x))
        graph = fn.get_concrete_function(tf.TensorSpec(example.shape, self._dtype)).graph
        ops = sum(op.type == "Relu" for op in graph.get_operations())
        if ops > calls[0]:
            raise ValueError(
                f"the model applies {ops} ReLUs, of which igkit can swap {calls[0]} for the "
                f"{rule!r} backward (layers with activation='relu', keras.layers.ReLU); the "
                f"other {ops - calls[0]} are called inside a layer's own code (tf.nn.relu in "
                "call) and would keep their plain gradient. Build those ReLUs as layers, or use "
                "method='saliency'"
            )

    def relu_gradients(
        self, points: np.ndarray, targets: np.ndarray, batch_size: int, rule: str
    ) -> np.ndarray:
        """The input gradient of each point's target score with every swappable ReLU's backward
        replaced by ``rule`` ("guided" or "deconvnet"), ``(M, *input_shape)``."""
        out = []
        with self._swapped_relus(rule, points[:1]):
            for start in range(0, points.shape[0], batch_size):
                stop = min(points.shape[0], start + batch_size)
                xb = tf.constant(points[start:stop], self._dtype)
                with tf.GradientTape() as tape:
                    tape.watch(xb)
                    scores = self._scores(xb)
                    s = tf.gather(scores, tf.constant(targets[start:stop], tf.int64), axis=1,
                                  batch_dims=1)
                    total = tf.reduce_sum(s)
                g = tape.gradient(total, xb)
                if g is None:
                    raise DisconnectedModelError(
                        "the explained output does not depend on the input"
                    )
                out.append(np.asarray(tf.convert_to_tensor(g).numpy(), dtype=np.float64))
        return np.concatenate(out)


def _plain_relu(layer: Any) -> bool:
    """A ``keras.layers.ReLU`` that is max(x, 0) (no cap, slope or threshold)."""
    cfg = layer.get_config()
    return (cfg.get("max_value") is None and not cfg.get("negative_slope")
            and not cfg.get("threshold"))
