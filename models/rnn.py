"""The paper's RNN: three LSTM layers of 128 units, each followed by dropout and batch norm; dense softmax.

The LSTMs read the clip frame by frame, a mel spectrum per step; the last one returns only its final state.
The paper's code drops 30 % of each LSTM's inputs and ends on a dense layer of 128 without activation before
the softmax; here 20 % of each LSTM's outputs are dropped, and the softmax reads the last state directly (two
linear layers in a row compute what one does).
"""

from __future__ import annotations

import keras
from keras import layers

from genreflow.models.blocks import BATCH_NORM_MOMENTUM, softmax_head

UNITS = 128
LAYERS = 3
DROPOUT = 0.2


def build(input_shape: tuple[int, int], n_genres: int) -> keras.Model:
    """The RNN for clips of `input_shape` = (frames, mel bands)."""
    inputs = keras.Input(shape=input_shape, name="log_mel")
    x = inputs
    for index in range(LAYERS):
        x = layers.LSTM(UNITS, return_sequences=index < LAYERS - 1)(x)
        x = layers.Dropout(DROPOUT)(x)
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(x)
    return keras.Model(inputs, softmax_head(x, n_genres), name="rnn")
