"""Training a cell on real Zarr stores with real TensorFlow: what the model directory holds, and that it learns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from genreflow.core import LOG_MEL, WEIGHT_AVERAGE_MOMENTUM, FeatureConfig, TrainingSettings
from genreflow.models.persistence import load_model
from genreflow.models.registry import build_model, model_names, spec
from genreflow.storage.schema import StoreError
from genreflow.storage.store import FeatureSet
from genreflow.tasks.evaluation.evaluate import evaluate_cell
from genreflow.tasks.training.dataset import BandNormaliser, fit_band_normaliser
from genreflow.tasks.training.train import CellInfo, TrainingData, compile_for_training, fold_dir, train_cell
from tests.support.stores import synthetic_audio_store, write_tiny_store

CLIP_SECONDS = 0.5  # 22 frames: the CRNN's four pools need 16


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    return write_tiny_store(tmp_path_factory.mktemp("train") / "store.zarr", genres=3, tracks_per_genre=4)


def fixed_clips(frames: int = 22) -> np.ndarray:
    return np.random.default_rng(9).normal(size=(6, frames, 128)).astype(np.float32)


def keys_of(data: TrainingData, track_ids: list[str]) -> list[str]:
    by_id = {track.track_id: track.key for track in data.tracks}
    return [by_id[track_id] for track_id in track_ids]


@pytest.mark.parametrize("model", [name for name in model_names() if spec(name).features == LOG_MEL])
def test_each_model_trains_into_a_self_contained_model_directory(
    model: str, tiny_store: TrainingData, tmp_path: Path
) -> None:
    model_dir = train_cell(
        tiny_store, model, CLIP_SECONDS, 0, "stratified", tmp_path / "cell", TrainingSettings(epochs=1)
    )
    assert model_dir == tmp_path / "cell"
    cell = CellInfo.load(model_dir)
    assert (cell.model, cell.clip_frames, cell.genres, cell.folds) == (model, 22, ["g0", "g1", "g2"], 1)
    assert cell.feature_config == tiny_store.feature_config
    assert (cell.data_version, cell.collection) == (tiny_store.data_version, tiny_store.collection)
    assert cell.tracks == list(tiny_store.tracks) and cell.excluded == {}
    fold = json.loads((fold_dir(model_dir, 0) / "fold.json").read_text())
    assert (len(fold["train"]), len(fold["valid"]), len(fold["test"])) == (6, 3, 3)
    assert fold["epochs_run"] == 1
    assert len(fold["history"]["loss"]) == (0 if model == "baseline" else 1)
    assert np.asarray(load_model(fold_dir(model_dir, 0)).predict_on_batch(fixed_clips())).shape == (6, 3)


def test_training_traces_the_train_step_once() -> None:
    # A variable made inside the first trace (an optimizer slot, a metric's counter) makes TensorFlow trace the
    # step again, which costs seconds per cell.
    model = build_model("cnn", (22, 128), 3)
    compile_for_training(model, 1e-3)
    traced = []
    step = model.train_step

    def counted_step(data: object) -> object:
        traced.append(data)
        return step(data)

    model.train_step = counted_step
    history = model.fit(fixed_clips(), np.eye(3)[[0, 1, 2, 0, 1, 2]], batch_size=3, epochs=2, verbose=0)
    assert len(traced) == 1
    assert sorted(history.history) == ["accuracy", "loss"] and len(history.history["accuracy"]) == 2


def test_normalisation_comes_from_each_folds_training_tracks_only(tiny_store: TrainingData, tmp_path: Path) -> None:
    model_dir = train_cell(tiny_store, "baseline", CLIP_SECONDS, 0, "kfold:2", tmp_path / "cell")
    store = FeatureSet.open(tiny_store.store, tiny_store.feature_config)
    everything = fit_band_normaliser(store, [track.key for track in tiny_store.tracks])
    for index in range(2):
        fold = json.loads((fold_dir(model_dir, index) / "fold.json").read_text())
        saved = BandNormaliser.load(fold_dir(model_dir, index) / "normalisation.json")
        np.testing.assert_allclose(
            saved.mean, fit_band_normaliser(store, keys_of(tiny_store, fold["train"])).mean, rtol=1e-6
        )
        assert not np.allclose(saved.mean, everything.mean)
    folds = [json.loads((fold_dir(model_dir, index) / "fold.json").read_text()) for index in range(2)]
    tested = [track for fold in folds for track in fold["test"]]
    assert sorted(tested) == [track.track_id for track in tiny_store.tracks]


def test_the_same_seed_trains_the_same_model_and_another_seed_does_not(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    def trained_output(seed: int, name: str) -> np.ndarray:
        model_dir = train_cell(
            tiny_store, "cnn", CLIP_SECONDS, seed, "stratified", tmp_path / name, TrainingSettings(epochs=1)
        )
        return np.asarray(load_model(fold_dir(model_dir, 0)).predict_on_batch(fixed_clips()))

    first = trained_output(0, "a")
    np.testing.assert_allclose(trained_output(0, "b"), first, rtol=1e-5, atol=1e-6)
    assert not np.allclose(trained_output(1, "c"), first, atol=1e-3)


def test_retraining_into_a_model_directory_replaces_the_earlier_training(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    train_cell(tiny_store, "baseline", CLIP_SECONDS, 0, "kfold:3", tmp_path / "cell")
    (tmp_path / "cell" / "result.json").write_text("{}")
    train_cell(tiny_store, "baseline", CLIP_SECONDS, 0, "stratified", tmp_path / "cell")
    assert sorted(path.name for path in (tmp_path / "cell").iterdir()) == ["cell.json", "fold-0"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"split": "random"}, "unknown split 'random'"),
        ({"clip_seconds": 0}, "positive, finite number of seconds, got 0"),
        ({"clip_seconds": float("inf")}, "positive, finite number of seconds, got inf"),
        ({"clip_seconds": float("nan")}, "positive, finite number of seconds, got nan"),
        ({"clip_seconds": 0.01}, "a 0.01 s clip is 0 frame\\(s\\); cnn needs at least 8 \\(0.19 s\\)"),
        ({"model": "crnn", "clip_seconds": 0.3}, "crnn needs at least 16"),
        ({"settings": TrainingSettings(epochs=0)}, "epochs must be at least 1"),
        ({"settings": TrainingSettings(label_smoothing=1.0)}, "label_smoothing must be in \\[0, 1\\)"),
        ({"settings": TrainingSettings(weight_decay=-0.1)}, "weight_decay at least 0, got 0.0 and -0.1"),
        ({"settings": TrainingSettings(hold_out_validation=False)}, "early stopping needs the validation tracks"),
        ({"settings": TrainingSettings(average_weights=True)}, "averaging the weights needs early stopping off"),
        (
            {"model": "rnn", "settings": TrainingSettings(early_stopping=True, average_weights=True)},
            "averaging the weights needs early stopping off",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    arguments: dict[str, object], message: str, tiny_store: TrainingData, tmp_path: Path
) -> None:
    call = {"data": tiny_store, "model": "cnn", "clip_seconds": 1.0, "seed": 0, "split": "stratified",
            "out_dir": tmp_path / "cell", **arguments}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        train_cell(**call)
    assert not (tmp_path / "cell").exists()


def test_a_missing_store_or_a_store_without_these_tracks_is_named(tiny_store: TrainingData, tmp_path: Path) -> None:
    elsewhere = TrainingData(str(tmp_path / "nowhere.zarr"), tiny_store.feature_config, "/music", tiny_store.tracks)
    with pytest.raises(StoreError, match="no genreflow store"):
        train_cell(elsewhere, "cnn", 1.0, 0, "stratified", tmp_path / "cell")
    FeatureSet.create_or_open(str(tmp_path / "empty.zarr"), FeatureConfig())
    empty = TrainingData(str(tmp_path / "empty.zarr"), tiny_store.feature_config, "/music", tiny_store.tracks)
    with pytest.raises(StoreError, match="empty.zarr lacks 12 of the tracks asked for"):
        train_cell(empty, "cnn", 1.0, 0, "stratified", tmp_path / "cell")


def test_a_cell_learns_from_its_collection_only_whatever_else_the_store_holds(tmp_path: Path) -> None:
    location = tmp_path / "store.zarr"
    ours = write_tiny_store(location, genres=3, tracks_per_genre=4, root="/music/ours")
    write_tiny_store(location, genres=5, tracks_per_genre=4, seed=1, root="/music/theirs")  # same names, other content

    model_dir = train_cell(ours, "baseline", CLIP_SECONDS, 0, "stratified", tmp_path / "cell")

    cell = CellInfo.load(model_dir)
    assert (cell.collection, cell.genres, len(cell.tracks)) == ("/music/ours", ["g0", "g1", "g2"], 12)
    assert (
        cell.data_version
        == ours.data_version
        == TrainingData.from_store(str(location), ours.feature_config, "/music/ours").data_version
    )
    result = evaluate_cell(model_dir, str(location))
    assert (result["n_tracks"]["test"], result["collection"]) == (3, "/music/ours")
    with pytest.raises(StoreError, match="holds 2 collections .*name one with --data"):
        TrainingData.from_store(str(location), ours.feature_config)


def test_tracks_shorter_than_the_clip_are_left_out_and_listed(tmp_path: Path) -> None:
    long = write_tiny_store(tmp_path / "store.zarr", genres=3, tracks_per_genre=4, n_frames=130, root="/music/long")
    short = write_tiny_store(
        tmp_path / "store.zarr", genres=3, tracks_per_genre=1, n_frames=30, seed=2, root="/music/short"
    )
    short_ids = {f"{track.track_id}-short" for track in short.tracks}
    renamed = tuple(type(track)(f"{track.track_id}-short", track.genre, track.key) for track in short.tracks)
    mixed = TrainingData(long.store, long.feature_config, "/music/mixed", long.tracks + renamed)

    model_dir = train_cell(mixed, "baseline", 2.0, 0, "stratified", tmp_path / "cell")  # 86 frames

    cell = CellInfo.load(model_dir)
    assert set(cell.excluded) == short_ids
    assert all(reason.startswith("shorter than the clip (") for reason in cell.excluded.values())
    assert evaluate_cell(model_dir, long.store)["excluded"] == cell.excluded
    with pytest.raises(
        ValueError, match="every track of /music/short is shorter than a 5 s clip \\(the longest lasts 0.7 s\\)"
    ):
        train_cell(short, "baseline", 5.0, 0, "stratified", tmp_path / "other")


def test_one_genre_is_not_a_classification_problem(tmp_path: Path) -> None:
    one = write_tiny_store(tmp_path / "store.zarr", genres=1, tracks_per_genre=6)
    with pytest.raises(ValueError, match="has 1 genre \\(g0\\).*needs at least 2"):
        train_cell(one, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell")


def test_damaged_tracks_are_refused_by_name_never_trained_on(tmp_path: Path) -> None:
    data = write_tiny_store(tmp_path / "store.zarr", genres=3, tracks_per_genre=4)
    next((tmp_path / "store.zarr").rglob("c.5.0.0")).unlink()  # the sixth track's chunk: it would read as NaN

    with pytest.raises(
        StoreError, match=f"damaged copies of 1 track.*{data.tracks[5].track_id} \\(batch .*c.5.0.0 is missing"
    ):
        train_cell(data, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell")
    assert not (tmp_path / "cell" / "cell.json").exists()


def test_the_cnn_learns_the_synthetic_collection_clearly_above_chance(tmp_path: Path) -> None:
    # Real WAVs through the extraction code; 64 bands at a 1024 hop keep the budget small on two cores.
    config = FeatureConfig(n_mels=64, n_fft=2048, hop_length=1024)
    _, data = synthetic_audio_store(tmp_path, tracks_per_genre=16, seconds=3.0, config=config)
    model_dir = train_cell(
        data, "cnn", 1.0, 0, "stratified", tmp_path / "cell", TrainingSettings(epochs=6, batch_size=16)
    )
    result = evaluate_cell(model_dir, data.store)
    chance = 1 / len(result["genres"])
    assert result["n_tracks"]["test"] == 18
    assert result["metrics"]["track"]["accuracy"] >= 2.5 * chance
    assert result["metrics"]["clip"]["accuracy"] >= 2 * chance


def test_a_cell_trains_in_the_precision_asked_for_and_its_record_says_so_and_on_what(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    model_dir = train_cell(
        tiny_store,
        "cnn",
        CLIP_SECONDS,
        0,
        "stratified",
        tmp_path / "bf16",
        TrainingSettings(epochs=1, precision="bfloat16"),
    )
    cell = CellInfo.load(model_dir)
    assert cell.settings.precision == "bfloat16" and cell.device.startswith(("cpu: ", "gpu:"))
    model = load_model(fold_dir(model_dir, 0))
    assert {layer.dtype_policy.name for layer in model.layers if layer.weights} >= {"mixed_bfloat16"}
    baseline_dir = train_cell(
        tiny_store, "baseline", CLIP_SECONDS, 0, "stratified", tmp_path / "b", TrainingSettings(precision="bfloat16")
    )
    assert CellInfo.load(baseline_dir).settings.precision == "float32"  # fitted by scikit-learn: no bfloat16


def test_musicnn_refuses_log_mel_data_and_names_the_feature_set_to_extract(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="genreflow extract --features musicnn"):
        train_cell(tiny_store, "musicnn", 3.0, 0, "stratified", tmp_path / "m")


def test_the_same_seed_trains_the_same_model_while_another_thread_draws_from_random(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    """As in a Dask worker, whose event loop draws from Python's global `random` while the cell builds its model."""
    import random
    import threading

    stop = threading.Event()

    def draw() -> None:  # a draw every 0.1 ms: many per layer built, without starving the training of the GIL
        while not stop.wait(0.0001):
            random.random()

    drawing = threading.Thread(target=draw, daemon=True)
    drawing.start()
    try:
        dirs = [
            train_cell(tiny_store, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / name, TrainingSettings(epochs=1))
            for name in "ab"
        ]
    finally:
        stop.set()
        drawing.join()
    first, second = (load_model(fold_dir(model_dir, 0)) for model_dir in dirs)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_cosine_schedule_warms_up_over_the_first_epoch_and_decays_to_zero() -> None:
    from genreflow.tasks.training.train import learning_rate_of

    settings = TrainingSettings(epochs=5, learning_rate=1e-3, schedule="cosine")
    schedule = learning_rate_of(settings, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(5e-4) and rates[2] == pytest.approx(1e-3)
    assert rates[2] > rates[3] > rates[4] and rates[4] == pytest.approx(0.0, abs=1e-9)
    assert learning_rate_of(TrainingSettings(learning_rate=1e-3, schedule="constant"), steps_per_epoch=10) == 1e-3


def test_without_early_stopping_every_epoch_runs_and_each_is_logged_as_n_of_all(
    tiny_store: TrainingData, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import keras

    from genreflow.tasks.training.train import training_callbacks

    stopping = [
        c
        for c in training_callbacks(TrainingSettings(patience=3, early_stopping=True))
        if isinstance(c, keras.callbacks.EarlyStopping)
    ]
    assert [(c.monitor, c.patience, c.restore_best_weights) for c in stopping] == [("val_loss", 3, True)]
    assert not any(
        isinstance(c, keras.callbacks.EarlyStopping) for c in training_callbacks(TrainingSettings(early_stopping=False))
    )
    settings = TrainingSettings(epochs=3, patience=1, early_stopping=False, schedule="cosine")
    caplog.set_level(logging.INFO, logger="genreflow")
    model_dir = train_cell(tiny_store, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell", settings)
    assert (CellInfo.load(model_dir).settings.early_stopping, CellInfo.load(model_dir).settings.schedule) == (
        False,
        "cosine",
    )
    assert len(json.loads((model_dir / "fold-0" / "fold.json").read_text())["history"]["loss"]) == 3
    epochs = [record.getMessage().split(":")[0] for record in caplog.records if record.name.startswith("genreflow")]
    assert [line for line in epochs if line.startswith("epoch")] == ["epoch 1 of 3", "epoch 2 of 3", "epoch 3 of 3"]


def test_mixup_label_smoothing_and_weight_decay_train_and_are_recorded(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    import keras

    model = build_model("cnn", (22, 128), 3)
    compile_for_training(model, 1e-3, label_smoothing=0.1, weight_decay=0.01)
    assert isinstance(model.optimizer, keras.optimizers.AdamW) and model.optimizer.weight_decay == 0.01
    assert model.loss.get_config()["label_smoothing"] == 0.1
    compile_for_training(model, 1e-3)
    assert type(model.optimizer) is keras.optimizers.Adam
    settings = TrainingSettings(epochs=2, augment="specaugment+mixup", label_smoothing=0.1, weight_decay=0.01)
    model_dir = train_cell(tiny_store, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell", settings)
    recorded = CellInfo.load(model_dir).settings
    assert (recorded.augment, recorded.label_smoothing, recorded.weight_decay) == ("specaugment+mixup", 0.1, 0.01)
    assert all(np.isfinite(json.loads((model_dir / "fold-0" / "fold.json").read_text())["history"]["loss"]))


def test_averaging_the_weights_ends_a_training_on_their_moving_average(
    tiny_store: TrainingData, tmp_path: Path
) -> None:
    import keras

    model = build_model("cnn", (22, 128), 3)
    compile_for_training(model, 1e-2, average_weights=True)
    clips = np.random.default_rng(0).normal(size=(8, 22, 128)).astype("float32")
    model.fit(clips, keras.utils.to_categorical([0, 1, 2] * 2 + [0, 1], 3), epochs=2, batch_size=4, verbose=0)
    averages = model.optimizer._model_variables_moving_average  # Keras keeps them only under this name
    assert model.optimizer.ema_momentum == WEIGHT_AVERAGE_MOMENTUM
    pairs = zip(model.trainable_weights, averages, strict=True)
    assert all(np.array_equal(weight, average) for weight, average in pairs)
    settings = TrainingSettings(epochs=2, early_stopping=False, average_weights=True)
    model_dir = train_cell(tiny_store, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell", settings)
    assert CellInfo.load(model_dir).settings.average_weights is True
    assert all(np.isfinite(json.loads((model_dir / "fold-0" / "fold.json").read_text())["history"]["loss"]))


def test_without_early_stopping_a_network_may_train_on_the_validation_tracks_too(
    tiny_store: TrainingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genreflow.tasks.training.train as train_module

    trained_on: list[set[str]] = []
    original = train_module.epoch_batches

    def spy(stream: object, tracks: list, *args: object, **kwargs: object) -> object:
        trained_on.append({track.track_id for track in tracks})
        return original(stream, tracks, *args, **kwargs)

    monkeypatch.setattr(train_module, "epoch_batches", spy)
    settings = TrainingSettings(epochs=2, early_stopping=False, hold_out_validation=False)
    model_dir = train_cell(tiny_store, "cnn", CLIP_SECONDS, 0, "stratified", tmp_path / "cell", settings)
    fold = json.loads((model_dir / "fold-0" / "fold.json").read_text())
    assert trained_on == [set(fold["train"]) | set(fold["valid"])] and fold["valid"]
    assert fold["history"]["val_loss"] == [] and len(fold["history"]["loss"]) == 2
    assert CellInfo.load(model_dir).settings.hold_out_validation is False
