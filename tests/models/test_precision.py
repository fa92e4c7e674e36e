"""The precision setting: 'auto' picks bfloat16 only for the models and hardware where it pays, an explicit
choice is kept, and the chosen policy builds a model that really computes in bfloat16 (and trains)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from genreflow.models import precision
from genreflow.models.precision import cpu_flags, cpu_supports_bf16, dtype_policy, resolve_precision
from genreflow.models.registry import build_model
from genreflow.tasks.training.train import compile_for_training

SAPPHIRE_RAPIDS = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
SKYLAKE = frozenset({"avx2", "avx512f", "avx512bw"})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\nbugs\t\t: none\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_bf16_support_needs_avx512_bf16_or_amx() -> None:
    assert cpu_supports_bf16(SAPPHIRE_RAPIDS)
    assert cpu_supports_bf16(frozenset({"avx512_bf16"}))
    assert not cpu_supports_bf16(SKYLAKE)
    assert not cpu_supports_bf16(frozenset())


@pytest.mark.parametrize(("flags", "expected"), [(SAPPHIRE_RAPIDS, "bfloat16"), (SKYLAKE, "float32")])
def test_auto_picks_bf16_on_a_cpu_only_for_the_models_it_speeds_up(
    monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], expected: str
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert resolve_precision("auto", "crnn", "cpu") == expected
    assert resolve_precision("auto", "cnn", "cpu") == expected
    assert resolve_precision("auto", "rnn", "cpu") == "float32"  # no faster in bfloat16
    assert resolve_precision("auto", "baseline", "cpu") == "float32"


def test_auto_on_a_gpu_needs_compute_capability_8_and_a_measured_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("auto", "crnn", "gpu:9.0") == "float32"  # no GPU measured yet: nothing pays
    monkeypatch.setitem(precision.BF16_PAYS, "gpu", frozenset({"crnn"}))
    assert resolve_precision("auto", "crnn", "gpu:9.0") == "bfloat16"
    assert resolve_precision("auto", "crnn", "gpu:8.0") == "bfloat16"
    assert resolve_precision("auto", "crnn", "gpu:7.5") == "float32"
    assert resolve_precision("auto", "cnn", "gpu:9.0") == "float32"


def test_an_explicit_precision_is_kept_and_nonsense_is_refused() -> None:
    assert resolve_precision("float32", "crnn", "cpu") == "float32"
    assert resolve_precision("bfloat16", "rnn", "gpu:7.0") == "bfloat16"
    for requested, device in [("half", "cpu"), ("auto", "tpu"), ("auto", "gpu:eight")]:
        with pytest.raises(ValueError):
            resolve_precision(requested, "crnn", device)


def test_the_bfloat16_policy_builds_a_model_that_computes_in_bfloat16_and_trains() -> None:
    with dtype_policy("bfloat16"):
        model = build_model("cnn", (22, 128), 3)
    assert keras.config.dtype_policy().name == "float32"  # restored
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    compile_for_training(model, 1e-3)
    x = np.random.default_rng(0).normal(size=(6, 22, 128)).astype(np.float32)
    history = model.fit(x, np.eye(3)[[0, 1, 2, 0, 1, 2]], batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probabilities = model.predict(x, verbose=0)
    assert probabilities.dtype == np.float32  # the softmax head computes in float32: the rows sum to 1
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    with dtype_policy("float32"):
        assert build_model("cnn", (22, 128), 3).layers[1].compute_dtype == "float32"


def test_the_policy_is_restored_when_building_fails() -> None:
    with pytest.raises(ValueError), dtype_policy("bfloat16"):
        build_model("resnet", (22, 128), 3)
    assert keras.config.dtype_policy().name == "float32"


def test_the_run_parameter_offers_exactly_the_precisions_that_resolve() -> None:
    import typing

    from genreflow.parameters import Precision

    assert typing.get_args(Precision) == precision.PRECISIONS


def test_the_precision_enters_a_cells_cache_key_as_resolved_here() -> None:
    from genreflow.core import FeatureConfig, TrainingSettings
    from genreflow.flows.cells import training_key
    from genreflow.models.registry import spec
    from genreflow.tasks.training.train import TrainingData

    data = TrainingData("store.zarr", FeatureConfig(), "collection", ())
    parameters = {"model": spec("crnn"), "clip_seconds": 5.0, "seed": 0, "split": "stratified", "data": data}
    keys = {
        value: training_key({**parameters, "settings": TrainingSettings(epochs=1, precision=value)})
        for value in precision.PRECISIONS
    }
    assert keys["float32"] != keys["bfloat16"]
    resolved = precision.resolve_precision("auto", "crnn", precision.training_device())
    assert keys["auto"] == keys[resolved]


def test_a_cell_takes_its_models_own_settings_where_the_run_left_them_open_and_shares_their_key() -> None:
    from genreflow.core import FeatureConfig, TrainingSettings
    from genreflow.flows.cells import training_key
    from genreflow.models.registry import spec
    from genreflow.tasks.training.train import TrainingData

    open_settings = TrainingSettings()
    cnn, rnn = (precision.resolved_settings(open_settings, spec(name)) for name in ("cnn", "rnn"))
    crnn = precision.resolved_settings(open_settings, spec("crnn"))
    assert (cnn.batch_size, cnn.schedule, cnn.early_stopping, cnn.augment) == (16, "constant", True, "none")
    assert (rnn.batch_size, rnn.schedule, rnn.early_stopping, rnn.augment) == (32, "cosine", False, "none")
    assert (crnn.batch_size, crnn.schedule, crnn.early_stopping, crnn.augment) == (32, "constant", True, "mixup")
    assert precision.resolved_settings(TrainingSettings(augment="none"), spec("crnn")).augment == "none"
    chosen = precision.resolved_settings(
        TrainingSettings(batch_size=8, schedule="constant", early_stopping=True), spec("rnn")
    )
    assert (chosen.batch_size, chosen.schedule, chosen.early_stopping) == (8, "constant", True)
    data = TrainingData("store.zarr", FeatureConfig(), "collection", ())
    parameters = {"model": spec("cnn"), "clip_seconds": 5.0, "seed": 0, "split": "stratified", "data": data}
    keys = [training_key({**parameters, "settings": TrainingSettings(batch_size=size)}) for size in (None, 16, 32)]
    assert keys[0] == keys[1] != keys[2]
    rnn_keys = [
        training_key({**parameters, "model": spec("rnn"), "settings": TrainingSettings(**chosen)})
        for chosen in ({}, {"schedule": "cosine", "early_stopping": False}, {"schedule": "constant"})
    ]
    assert rnn_keys[0] == rnn_keys[1] != rnn_keys[2]
