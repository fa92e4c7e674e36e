"""The Keras 3 rebuild of musicnn's MSD network: the same outputs as the original TF1 graph, its patching, a
clear error without the weights, and sensible tags on real music.

reference.npz holds the original graph's outputs on five fixed patches (tests/fixtures/musicnn/make_reference.py
ran the checkpoint's own `.meta` graph). The rebuild matched it to 1.8e-7 on the tags and 2.0e-6 on the
embedding (values up to 3.3) when written; the tolerance is 1e-5 absolute on both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from genreflow.models import musicnn_net
from tests.support.paths import FIXTURES

REFERENCE = FIXTURES / "musicnn" / "reference.npz"
ATOL = 1e-5
METAL_TAGS = {"metal", "heavy metal", "hard rock"}


@pytest.fixture(scope="module")
def model():
    try:
        musicnn_net.weights_prefix()
    except musicnn_net.MissingWeightsError as error:
        pytest.skip(str(error))
    return musicnn_net.load_musicnn()


def test_the_rebuild_gives_the_original_graphs_tags_and_embeddings(model) -> None:
    reference = np.load(REFERENCE)
    outputs = model.predict_on_batch(reference["inputs"])
    assert outputs["tags"].shape == (5, len(musicnn_net.TAGS))
    assert outputs["embedding"].shape == (5, musicnn_net.EMBEDDING_SIZE)
    np.testing.assert_allclose(outputs["tags"], reference["tags"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(outputs["embedding"], reference["embedding"], rtol=0, atol=ATOL)


def test_embed_gives_each_patch_its_own_embedding(model) -> None:
    reference = np.load(REFERENCE)
    spectrogram = np.concatenate([*reference["inputs"], np.zeros((100, musicnn_net.N_MELS), np.float32)])
    embeddings = musicnn_net.embed(model, spectrogram, batch_patches=2)
    assert embeddings.shape == (5, musicnn_net.EMBEDDING_SIZE) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, reference["embedding"], rtol=0, atol=ATOL)


def test_every_checkpoint_variable_is_loaded_once(model) -> None:
    # 787,159 trained values and 4,920 batch-norm statistics, per the checkpoint.
    assert model.count_params() == 787_159 + 4_920


def test_patches_are_consecutive_3_s_windows_and_the_tail_is_dropped() -> None:
    frames = 3 * musicnn_net.PATCH_FRAMES + 186
    spectrogram = np.arange(frames * musicnn_net.N_MELS, dtype=np.float32).reshape(frames, musicnn_net.N_MELS)
    windows = musicnn_net.patches(spectrogram)
    assert windows.shape == (3, musicnn_net.PATCH_FRAMES, musicnn_net.N_MELS) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[1], spectrogram[187:374])
    assert musicnn_net.patches(spectrogram[:187]).shape == (1, 187, 96)


def test_a_clip_shorter_than_one_patch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 s"):
        musicnn_net.patches(np.zeros((186, musicnn_net.N_MELS), np.float32))


def test_missing_weights_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(musicnn_net.MissingWeightsError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        musicnn_net.load_musicnn(str(tmp_path) + "/")


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(musicnn_net.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(musicnn_net.MissingWeightsError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        musicnn_net.weights_prefix()


def test_the_tag_names_are_musicnns_msd_labels() -> None:
    try:
        prefix = musicnn_net.weights_prefix()
    except musicnn_net.MissingWeightsError as error:
        pytest.skip(str(error))
    source = (Path(prefix).parent / "configuration.py").read_text()
    labels = next(
        ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MSD_LABELS"
    )
    assert tuple(labels) == musicnn_net.TAGS


def top_tags(model, track: Path, n: int = 5) -> list[str]:
    """The clip's n most probable tags, averaged over its 3 s patches."""
    import librosa

    from genreflow.tasks.features.musicnn_input import SAMPLE_RATE, musicnn_spectrogram

    audio, _ = librosa.load(track, sr=SAMPLE_RATE, mono=True)
    scores = model.predict_on_batch(musicnn_net.patches(musicnn_spectrogram(audio)))["tags"].mean(axis=0)
    return [musicnn_net.TAGS[i] for i in np.argsort(-scores)[:n]]


def test_a_real_metal_track_is_tagged_metal(model, gtzan_mini: Path) -> None:
    top = top_tags(model, gtzan_mini / "metal" / "metal.00000.wav")
    assert METAL_TAGS & set(top), top


def test_a_real_classical_track_is_tagged_instrumental_not_metal(model, gtzan_mini: Path) -> None:
    # The 50 MSD tags have no "classical"; all seven gtzan-mini classical tracks come out "instrumental" first.
    top = top_tags(model, gtzan_mini / "classical" / "classical.00000.wav")
    assert top[0] == "instrumental", top
    assert not (METAL_TAGS | {"punk"}) & set(top), top


def test_the_front_end_does_not_overflow_in_float16_on_loud_audio() -> None:
    from genreflow.tasks.features.musicnn_input import HOP, N_MELS, SAMPLE_RATE, musicnn_spectrogram

    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    spectrogram = musicnn_spectrogram(0.9 * np.sin(2 * np.pi * 440 * t))
    assert spectrogram.shape == (1 + t.size // HOP, N_MELS) and spectrogram.dtype == np.float32
    assert np.isfinite(spectrogram).all()
    # Above log10(10000 * 6.55 + 1): where 10000 * S computed in float16 would have been inf.
    assert spectrogram.max() > 4.9
