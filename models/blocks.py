"""The convolution block the CNN and the CRNN share: 3x3 convolution, ELU, batch norm, max-pooling, dropout.

Inputs are laid out time first, (frames, mel bands, channels), as the store keeps them. Nasrullah & Zhao
write their pool sizes as (frequency, time); the builders here give them as (time, frequency).
"""

from __future__ import annotations

import keras
from keras import layers

# Keras' default (0.99) needs hundreds of steps before the running statistics that inference uses catch up
# with the weights; a small collection gives a few steps per epoch (30 tracks: 5 batches), so the validation
# loss that early stopping watches was stuck at chance for the first epochs. 0.9 catches up within ~20 steps.
BATCH_NORM_MOMENTUM = 0.9


def conv_block(x: keras.KerasTensor, filters: int, pool: tuple[int, int], dropout: float) -> keras.KerasTensor:
    """One block; "same" padding so that only the pooling shrinks the map."""
    x = layers.Conv2D(filters, (3, 3), padding="same")(x)
    x = layers.ELU()(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(x)
    x = layers.MaxPooling2D(pool)(x)
    return layers.Dropout(dropout)(x)


def spectrogram_input(input_shape: tuple[int, int]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model input (frames, mels) and the same tensor as a one-channel image for the convolutions."""
    inputs = keras.Input(shape=input_shape, name="log_mel")
    return inputs, layers.Reshape((*input_shape, 1))(inputs)


def softmax_head(x: keras.KerasTensor, n_genres: int) -> keras.KerasTensor:
    """The genre probabilities, computed in float32 whatever the precision policy: in bfloat16 (3 significant
    digits) a clip's probabilities summed to 1 only within 1e-3 (0.999-1.001 over 64 clips of an untrained CNN)."""
    return layers.Dense(n_genres, activation="softmax", name="genre", dtype="float32")(x)
