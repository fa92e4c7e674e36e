"""musicnn's pretrained MSD network (Pons & Serra 2019; musicnn 0.1.0, ISC licence), rebuilt in Keras 3.

The published weights are a TF1 checkpoint inside the `musicnn` wheel (installed with `--no-deps`: its numpy
pin cannot be met and only its data files are used). musicnn's own model code does not run under Keras 3 and
its extractor switches eager execution off on import, so the architecture is written here and the checkpoint
is read variable by variable. Keras layers carry the TF1 variable scopes as names (`conv2d_3`,
`batch_normalization_7`, ...), so the mapping from checkpoint to layer is by name, checked both ways.

Input: (batch, 187, 96) float32 patches of `genreflow.tasks.features.musicnn_input.musicnn_spectrogram`
(3 s each, time first). Output: a dict, `{"embedding": (batch, 200), "tags": (batch, 50)}` — named outputs,
because callers want one or the other and a tuple's order would be one more thing to remember. The embedding
is the penultimate layer taken after its batch norm (it can be negative), the layer whose per-track mean
classifies genre best; the tags are the 50 MSD tag probabilities, in the order of `TAGS`.

Architecture (every batch norm has epsilon 1e-3 and comes after the ReLU):
- batch norm of the one-channel spectrogram;
- timbral branch: zero-pad 3+3 frames, VALID 7x38 and 7x67 (time x mel) convolutions, 204 filters each,
  max over the remaining mel positions;
- temporal branch (unpadded input): 128x1, 64x1, 32x1 convolutions, 51 filters each, TF "SAME" padding in
  time ((k-1)//2 before, k//2 after), max over all 96 bands; front end = concat of the five, 561 channels;
- mid-end: three 7-frame convolutions of 64 filters on input zero-padded 3+3, the second and third residual;
  concat [front end, cnn1, res2, res3] = 753 channels;
- back end: max and mean over time, interleaved [max0, mean0, max1, ...] (1,506), batch norm, dense 200
  ReLU, batch norm (the embedding), dense 50 sigmoid.
The original's dropout (back end, training only) is left out: this is an inference network.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np

from genreflow.models import import_tensorflow

import_tensorflow()  # before Keras starts TensorFlow: genreflow's settings and a quiet start

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

PATCH_FRAMES = 187  # 3 s at 16 kHz, hop 256: the patch the network was trained on
N_MELS = 96
EMBEDDING_SIZE = 200
BATCH_PATCHES = 16  # patches per predict_on_batch call in `embed`: ~30 MB of activations per patch
BATCH_NORM_EPSILON = 1e-3  # TF1's tf.layers default, which the checkpoint was trained with
PIP_HINT = "run `.venv/bin/pip install --no-deps musicnn==0.1.0` (or `make venv`)"
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")

# The 50 MSD tags in the order of the network's outputs. The checkpoint folder's config.json only numbers the
# classes; the names are musicnn 0.1.0's `configuration.MSD_LABELS`, kept here as data so that nothing of
# musicnn's code is imported (tests check they still agree with the installed file).
TAGS: tuple[str, ...] = (
    "rock",
    "pop",
    "alternative",
    "indie",
    "electronic",
    "female vocalists",
    "dance",
    "00s",
    "alternative rock",
    "jazz",
    "beautiful",
    "metal",
    "chillout",
    "male vocalists",
    "classic rock",
    "soul",
    "indie rock",
    "Mellow",
    "electronica",
    "80s",
    "folk",
    "90s",
    "chill",
    "instrumental",
    "punk",
    "oldies",
    "blues",
    "hard rock",
    "ambient",
    "acoustic",
    "experimental",
    "female vocalist",
    "guitar",
    "Hip-Hop",
    "70s",
    "party",
    "country",
    "easy listening",
    "sexy",
    "catchy",
    "funk",
    "electro",
    "heavy metal",
    "Progressive rock",
    "60s",
    "rnb",
    "indie pop",
    "sad",
    "House",
    "happy",
)


class MissingWeightsError(RuntimeError):
    """The musicnn checkpoint is not installed: the message says how to install it."""


def weights_prefix() -> str:
    """The checkpoint prefix of musicnn's MSD model, the `musicnn/MSD_musicnn/` folder path ending in "/" (its
    files are named `.index`, `.data-...`). Found with `find_spec`, which imports nothing of musicnn."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"the musicnn package (pretrained weights) is not installed: {PIP_HINT}")
    prefix = str(Path(next(iter(spec.submodule_search_locations))) / "MSD_musicnn") + "/"
    _check_files(prefix)
    return prefix


def _check_files(prefix: str) -> None:
    missing = [prefix + name for name in CHECKPOINT_FILES if not Path(prefix + name).is_file()]
    if missing:
        raise MissingWeightsError(f"musicnn's MSD checkpoint is incomplete, missing {', '.join(missing)}: {PIP_HINT}")


def _batch_norm(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    # Not trainable: Keras 3 then normalises with the stored statistics even under fit(training=True), so the
    # network stays the published one whatever a caller does with it.
    norm = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=name)
    norm.trainable = False
    return norm(x)


def _same_padding(kernel: int) -> tuple[int, int]:
    """TF's "SAME" split for stride 1: the odd one out after (an even kernel pads one more at the end)."""
    return (kernel - 1) // 2, kernel // 2


def build_musicnn() -> keras.Model:
    """The MSD musicnn architecture with untrained weights; `load_musicnn` fills them. Layer names are the TF1
    variable scopes of the checkpoint."""
    inputs = keras.Input(shape=(PATCH_FRAMES, N_MELS), name="musicnn_input")
    x = layers.Reshape((PATCH_FRAMES, N_MELS, 1), name="one_channel")(inputs)
    x = _batch_norm(x, "batch_normalization")

    # Front end. The timbral kernels span 38 and 67 bands (40 % and 70 % of 96); the temporal ones one band.
    timbral_input = layers.ZeroPadding2D(((3, 3), (0, 0)), name="pad_timbral")(x)
    timbral = []
    for index, width in ((0, 38), (1, 67)):
        y = layers.Conv2D(204, (7, width), activation="relu", name=f"conv2d{'_1' if index else ''}")(timbral_input)
        y = _batch_norm(y, f"batch_normalization_{index + 1}")
        timbral.append(ops.max(y, axis=2))
    temporal = []
    for index, length in ((2, 128), (3, 64), (4, 32)):
        y = layers.ZeroPadding2D((_same_padding(length), (0, 0)), name=f"pad_conv2d_{index}")(x)
        y = layers.Conv2D(51, (length, 1), activation="relu", name=f"conv2d_{index}")(y)
        y = _batch_norm(y, f"batch_normalization_{index + 1}")
        temporal.append(ops.max(y, axis=2))
    front = layers.Concatenate(axis=-1, name="front_end")(timbral + temporal)  # (batch, 187, 561)

    # Mid-end: the TF1 graph convolves (frames, channels, 1) images with 7 x channels kernels, which is a
    # Conv1D over frames with the checkpoint kernel's input-channel axis (of size 1) squeezed.
    mid = [front]
    y = front
    for index in (5, 6, 7):
        z = layers.ZeroPadding1D((3, 3), name=f"pad_conv2d_{index}")(y)
        z = layers.Conv1D(64, 7, activation="relu", name=f"conv2d_{index}")(z)
        z = _batch_norm(z, f"batch_normalization_{index + 1}")
        y = z if index == 5 else layers.Add(name=f"residual_{index}")([z, y])
        mid.append(y)
    mid_end = layers.Concatenate(axis=-1, name="mid_end")(mid)  # (batch, 187, 753)

    # Back end: max and mean over time, flattened channel by channel as the TF1 graph's (753, 2) concat was.
    pooled = ops.stack([ops.max(mid_end, axis=1), ops.mean(mid_end, axis=1)], axis=-1)
    pooled = layers.Reshape((2 * mid_end.shape[-1],), name="max_mean_pool")(pooled)
    pooled = _batch_norm(pooled, "batch_normalization_9")
    hidden = layers.Dense(EMBEDDING_SIZE, activation="relu", name="dense")(pooled)
    embedding = _batch_norm(hidden, "batch_normalization_10")
    tags = layers.Dense(len(TAGS), activation="sigmoid", name="dense_1")(embedding)
    return keras.Model(inputs, {"embedding": embedding, "tags": tags}, name="musicnn_msd")


def _is_training_state(name: str) -> bool:
    """Adam's slots and its beta powers: in the checkpoint, not in the network."""
    return "/Adam" in name or name.startswith(("beta1_power", "beta2_power"))


def load_musicnn(prefix: str | None = None) -> keras.Model:
    """`build_musicnn()` with every weight read from the TF1 checkpoint at `prefix` (default: the installed
    wheel's). Fails loudly if a network weight is missing from the checkpoint, a shape differs, or a stored
    variable is left unused: a silent partial load would give plausible-looking, wrong embeddings."""
    prefix = weights_prefix() if prefix is None else prefix
    _check_files(prefix)
    # Not tf.train.load_checkpoint: it follows the folder's `checkpoint` file, which names the author's machine.
    from tensorflow.python.training import py_checkpoint_reader

    reader = py_checkpoint_reader.NewCheckpointReader(prefix)
    stored = {
        name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items() if not _is_training_state(name)
    }
    model = build_musicnn()
    used: Counter[str] = Counter()
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            name = f"{layer.name}/{weight.name}"
            if name not in stored:
                raise ValueError(f"musicnn checkpoint {prefix} has no variable {name} for layer {layer.name}")
            value = reader.get_tensor(name)
            if isinstance(layer, layers.Conv1D) and value.ndim == 4 and value.shape[2] == 1:
                value = value[:, :, 0, :]  # (k, channels, 1, filters) image kernel -> (k, channels, filters)
            if tuple(value.shape) != tuple(weight.shape):
                raise ValueError(
                    f"musicnn checkpoint variable {name} has shape {stored[name]}, layer wants {tuple(weight.shape)}"
                )
            values.append(value.astype(np.float32))
            used[name] += 1
        if values:
            layer.set_weights(values)
    twice = sorted(name for name, count in used.items() if count > 1)
    unused = sorted(set(stored) - set(used))
    if twice or unused:
        raise ValueError(f"musicnn checkpoint {prefix} does not match the network: used twice {twice}, unused {unused}")
    return model


def patches(spectrogram: np.ndarray) -> np.ndarray:
    """(frames, 96) -> (n, 187, 96): consecutive 3 s patches, hop 187, the last partial patch dropped, as the
    network was applied in musicnn. A clip shorter than one patch has none and is refused."""
    spectrogram = np.asarray(spectrogram, dtype=np.float32)
    if spectrogram.ndim != 2 or spectrogram.shape[1] != N_MELS:
        raise ValueError(f"expected a (frames, {N_MELS}) spectrogram, got shape {spectrogram.shape}")
    n = spectrogram.shape[0] // PATCH_FRAMES
    if n == 0:
        raise ValueError(
            f"musicnn needs at least 3 s of audio ({PATCH_FRAMES} frames at 16 kHz, hop 256); "
            f"got {spectrogram.shape[0]} frames"
        )
    return np.ascontiguousarray(spectrogram[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS))


def embed(model: keras.Model, spectrogram: np.ndarray, batch_patches: int = BATCH_PATCHES) -> np.ndarray:
    """(n_patches, 200) float32 penultimate embeddings of each 3 s patch of a (frames, 96) spectrogram. Every
    patch gets its own (musicnn 0.1.0's extractor repeated the first patch's: a bug)."""
    windows = patches(spectrogram)
    out = [
        np.asarray(model.predict_on_batch(windows[start : start + batch_patches])["embedding"], dtype=np.float32)
        for start in range(0, len(windows), batch_patches)
    ]
    return np.concatenate(out, axis=0)
