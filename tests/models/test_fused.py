"""Batch normalisation through the fused kernel trains the same model as Keras' own ops, only faster: the same
losses, weights and moving statistics up to rounding, the same inference, the same saved model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from genreflow.models.fused import fuse_batch_norms
from genreflow.models.persistence import load_model, save_model
from genreflow.models.precision import dtype_policy
from genreflow.models.registry import build_model
from genreflow.tasks.training.train import compile_for_training

N_MELS = 128


def data(frames: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, frames, N_MELS)).astype(np.float32), np.eye(3)[rng.integers(0, 3, size=8)]


def trained(name: str, frames: int, fused: bool, precision: str = "float32") -> tuple[keras.Model, list[float]]:
    tf.config.experimental.enable_op_determinism()  # as training runs; threads otherwise reorder the sums
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        model = build_model(name, (frames, N_MELS), 3)
    compile_for_training(model, 1e-3, fused_batch_norm=fused)
    x, y = data(frames)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return model, history.history["loss"]


def one_training_step(name: str, frames: int, fused: bool) -> tuple[keras.Model, float, list[np.ndarray]]:
    """The model (seed 0) after one forward pass in training mode: its loss and its gradients."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    model = build_model(name, (frames, N_MELS), 3)
    if fused:
        fuse_batch_norms(model)
    x, y = data(frames)
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    gradients = tape.gradient(loss, model.trainable_weights)
    return model, float(loss), [np.asarray(gradient) for gradient in gradients]


@pytest.mark.parametrize(("name", "frames", "layers"), [("cnn", 22, 3), ("rnn", 12, 3), ("crnn", 32, 5)])
def test_fused_training_is_keras_training_up_to_rounding(name: str, frames: int, layers: int) -> None:
    """The same loss, gradients (through the batch statistics too) and moving statistics as Keras' own ops, for
    one step from the same weights. (Compared after several Adam steps, rounding gets amplified: Adam moves a
    weight by about the learning rate whatever its gradient's size, so a near-zero gradient's sign decides.)"""
    keras_model, keras_loss, keras_gradients = one_training_step(name, frames, fused=False)
    fused_model, fused_loss, fused_gradients = one_training_step(name, frames, fused=True)
    assert sum(getattr(layer, "_genreflow_fused", False) for layer in fused_model.layers) == layers
    assert fused_loss == pytest.approx(keras_loss, rel=1e-5)
    for keras_gradient, fused_gradient in zip(keras_gradients, fused_gradients, strict=True):
        scale = float(np.abs(keras_gradient).max()) or 1.0
        np.testing.assert_allclose(fused_gradient, keras_gradient, atol=1e-3 * scale)
    for keras_weight, fused_weight in zip(keras_model.weights, fused_model.weights, strict=True):
        assert keras_weight.path.split("/")[-1] == fused_weight.path.split("/")[-1]
        np.testing.assert_allclose(fused_weight.numpy(), keras_weight.numpy(), rtol=1e-4, atol=1e-5)


def test_in_bfloat16_the_fused_kernel_reads_the_activation_as_it_is_and_trains_as_keras_does() -> None:
    # Keras casts to float32 around its ops; the fused kernel computes in float32 inside.
    _, keras_loss = trained("cnn", 22, fused=False, precision="bfloat16")
    fused_model, fused_loss = trained("cnn", 22, fused=True, precision="bfloat16")
    np.testing.assert_allclose(fused_loss, keras_loss, rtol=1e-2)  # bfloat16 keeps 3 significant digits
    layer = next(layer for layer in fused_model.layers if isinstance(layer, keras.layers.BatchNormalization))
    x = tf.zeros((2, 22, 128, 32), "bfloat16")
    graph = tf.function(lambda inputs: layer(inputs, training=True)).get_concrete_function(x).graph
    fused_ops = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
    assert [op.get_attr("T") for op in fused_ops] == [tf.bfloat16]


def test_the_fused_kernel_is_what_trains_and_only_while_training() -> None:
    model = build_model("cnn", (22, N_MELS), 3)
    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 22, 128, 32)).astype(np.float32))
    assert fuse_batch_norms(model) == 3
    assert fuse_batch_norms(model) == 0  # already fused

    def ops(training: bool) -> set[str]:
        graph = tf.function(lambda inputs: layer(inputs, training=training)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops(training=True)
    assert "FusedBatchNormV3" not in ops(training=False)


def test_a_fused_model_saves_and_loads_as_the_plain_keras_model(tmp_path: Path) -> None:
    model, _ = trained("cnn", 22, fused=True)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    x, _ = data(22)
    assert not any(hasattr(layer, "_genreflow_fused") for layer in loaded.layers)
    np.testing.assert_array_equal(np.asarray(loaded.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)))
