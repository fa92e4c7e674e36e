"""Batch normalisation through TensorFlow's fused kernel while training: the same maths, far fewer passes.

Keras 3 normalises a batch with primitive ops (`tf.nn.moments`, then `x * a + b`), and the gradient tape
differentiates each of them: over the CNN's first block, a 32 x 215 x 128 x 32 activation (113 MB) is read and
written some twenty times per training step (means, squared differences, tiles of the broadcast gradients,
sums, an AddN of three gradient paths). That was half of the CNN's training step (docs/benchmarks.md).
`FusedBatchNormV3` (oneDNN on x86) computes the batch's mean and variance in one pass, normalises in a second,
and its gradient kernel computes the whole backward pass (through the batch statistics too) in two. In
mixed_bfloat16 it reads the bfloat16 activation itself and computes in float32 inside, where Keras casts to
float32 and back around its ops.

What is computed is the Keras layer's own definition: y = gamma * (x - mean) / sqrt(var + epsilon) + beta with
the batch's mean and biased variance over every axis but the last, and the moving statistics updated with the
layer's momentum from that same mean and biased variance (the fused kernel reports the unbiased variance,
n / (n - 1) times larger, which is scaled back). Only the rounding of the sums differs. The layers, their
weights, their configuration and the saved model do not change: `fuse_batch_norms` swaps the `call` of each
layer instance, and only its training branch; inference keeps Keras' own code.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from genreflow.models import import_tensorflow


def fuse_batch_norms(model: Any) -> int:
    """Route the training-mode batch normalisation of every eligible layer of `model` through the fused kernel;
    returns how many layers were changed. Eligible: normalises the last axis, no renormalisation, not
    synchronised across replicas. Calling it again changes nothing."""
    import keras

    changed = 0
    for layer in _layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or getattr(layer, "_genreflow_fused", False):
            continue
        if layer.renorm or layer.synchronized or layer.axis not in (-1, len(layer.input.shape) - 1):
            continue
        keras_call = layer.call
        layer.call = MethodType(_make_fused_call(keras_call), layer)
        layer._genreflow_fused = True
        changed += 1
    return changed


def _layers(model: Any) -> list[Any]:
    """Every layer of `model`, nested models' layers included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_layers(layer))
    return found


def _make_fused_call(keras_call: Any) -> Any:
    def call(self: Any, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if mask is not None or not (training and self.trainable):
            return keras_call(inputs, training=training, mask=mask)
        return _fused_training_call(self, inputs)

    return call


def _fused_training_call(layer: Any, inputs: Any) -> Any:
    """The layer's training branch (keras.layers.BatchNormalization.call) with the fused kernel."""
    tf = import_tensorflow()
    # Keras casts a bfloat16 input to float32 first; the fused kernel takes it as it is and computes the
    # statistics and the normalisation in float32 inside (the cast moved into the kernel), which spares two
    # passes over the activation: the CNN in mixed_bfloat16 trains 1.2-2x faster than with the cast.
    x = inputs if inputs.dtype in (tf.bfloat16, tf.float32) else tf.cast(inputs, "float32")
    channels = x.shape[-1]
    rank = len(x.shape)
    shaped = x if rank == 4 else tf.reshape(x, [1, -1, 1, channels])  # NHWC: statistics over all but channels
    gamma = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels], "float32")
    beta = tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels], "float32")
    y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
        shaped, gamma, beta, epsilon=layer.epsilon, data_format="NHWC", is_training=True
    )
    count = tf.cast(tf.size(x) // channels, "float32")
    variance = unbiased * tf.math.maximum(count - 1.0, 1.0) / count  # the biased variance Keras uses
    momentum = layer.momentum
    layer.moving_mean.assign(tf.cast(layer.moving_mean, "float32") * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(tf.cast(layer.moving_variance, "float32") * momentum + variance * (1.0 - momentum))
    if rank != 4:
        y = tf.reshape(y, tf.shape(x))
    return tf.cast(y, layer.compute_dtype)
