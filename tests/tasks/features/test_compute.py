"""What each feature set computes from audio, how its frames count clip seconds, and which audio it refuses."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from genreflow.core import FEATURE_SETS, LATER_FIELDS, MUSICNN, FeatureConfig
from genreflow.tasks.features.compute import compute_features, log10_compressed, too_short_for


def test_the_log_mel_identity_is_the_one_stores_were_written_with_before_the_new_fields() -> None:
    before = {k: v for k, v in FeatureConfig().to_dict().items() if k not in LATER_FIELDS}
    assert FeatureConfig().identity() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert FEATURE_SETS[MUSICNN].identity() != FeatureConfig().identity()


def test_musicnn_frames_are_whole_3s_patches() -> None:
    config = FEATURE_SETS[MUSICNN]
    assert config.width == 200 and round(config.frame_seconds, 3) == 2.992
    assert [config.frames_for(seconds) for seconds in (1, 2.99, 3, 5, 15, 30)] == [0, 0, 1, 1, 5, 10]
    assert FeatureConfig().frames_for(5) == 215  # the log-mel's rounding is unchanged


def test_a_track_shorter_than_one_patch_is_refused_with_the_reason() -> None:
    config = FEATURE_SETS[MUSICNN]
    assert too_short_for(np.zeros(16_000 * 2, np.float32), config) == "shorter than one 2.99 s patch of musicnn-msd"
    assert too_short_for(np.zeros(16_000 * 3, np.float32), config) is None
    assert too_short_for(np.zeros(100, np.float32), FeatureConfig()) is None


def test_musicnn_compression_stays_finite_where_float16_arithmetic_would_overflow() -> None:
    loud = np.array([[7.0, 60_000.0]], dtype=np.float32)
    assert np.isfinite(log10_compressed(loud)).all()


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        FeatureConfig(compression="ln")
    with pytest.raises(ValueError, match="inconsistent"):
        FeatureConfig(embedding="musicnn-msd")


def test_musicnn_embeddings_of_a_track_are_one_row_per_patch() -> None:
    pytest.importorskip("musicnn", reason="musicnn's weights are installed by make venv")
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 16_000 * 7).astype(np.float32)
    embeddings = compute_features(audio, FEATURE_SETS[MUSICNN])
    assert embeddings.shape == (2, 200) and embeddings.dtype == np.float32 and np.isfinite(embeddings).all()


def test_embeddings_are_computed_in_a_process_where_tensorflow_already_runs() -> None:
    """As in `genreflow predict` after other TensorFlow work: its thread pools are fixed by then (a fresh process,
    so that no earlier test has set them)."""
    import subprocess
    import sys

    pytest.importorskip("musicnn", reason="musicnn's weights are installed by make venv")
    script = """
import numpy as np
from genreflow.models import import_tensorflow
tensorflow = import_tensorflow()
tensorflow.constant(1.0) + 1.0  # TensorFlow now runs: its pools are started
from genreflow.core import FEATURE_SETS, MUSICNN
from genreflow.tasks.features.compute import compute_features
audio = np.random.default_rng(1).uniform(-0.3, 0.3, 16_000 * 4).astype(np.float32)
print(compute_features(audio, FEATURE_SETS[MUSICNN]).shape)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 200)"
