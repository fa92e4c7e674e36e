"""Nasrullah & Zhao (2019)'s CRNN: input batch norm, four convolution blocks, two GRU layers of 32, softmax.

Filters 64, 128, 128, 128; their pools (2,2), (4,2), (4,2), (4,2) over (frequency, time) are written here
as (time, frequency). With 128 mel bands the four pools reduce the frequency axis to 1, so the GRUs read
a sequence of 128-channel vectors, one per 16 input frames. 393,678 parameters for 10 genres.
"""

from __future__ import annotations

import keras
from keras import layers

from genreflow.models.blocks import BATCH_NORM_MOMENTUM, conv_block, softmax_head, spectrogram_input

FILTERS = (64, 128, 128, 128)
POOLS = ((2, 2), (2, 4), (2, 4), (2, 4))
BLOCK_DROPOUT = 0.1
GRU_UNITS = 32
FINAL_DROPOUT = 0.3


def build(input_shape: tuple[int, int], n_genres: int) -> keras.Model:
    """The CRNN for clips of `input_shape` = (frames, mel bands); needs at least 16 frames."""
    inputs, x = spectrogram_input(input_shape)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(x)
    for filters, pool in zip(FILTERS, POOLS, strict=True):
        x = conv_block(x, filters, pool, BLOCK_DROPOUT)
    _, steps, bands, channels = x.shape
    x = layers.Reshape((steps, bands * channels))(x)
    x = layers.GRU(GRU_UNITS, return_sequences=True)(x)
    x = layers.GRU(GRU_UNITS)(x)
    x = layers.Dropout(FINAL_DROPOUT)(x)
    return keras.Model(inputs, softmax_head(x, n_genres), name="crnn")
