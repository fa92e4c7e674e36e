"""Training one cell (model, clip length, seed, split) into a model directory that prediction can use alone.

A cell learns from exactly the tracks it is given (`TrainingData`: a collection's usable tracks, keyed by
content), never from whatever else the store holds. Tracks shorter than the clip are left out and listed
(`excluded` in cell.json and the result); damaged or missing features stop the cell with their names.

The model directory (`out_dir` of `train_cell`) is laid out as `genreflow.models.directory` describes: a
fold folder per training (one, or K for kfold:K), cell.json written last.

Prediction averages the softmax of every fold's model: for kfold:K an ensemble of the K models, each
trained on about (K-1)/K of the tracks; for the other splits simply the one model.

Determinism: Keras' seed (`keras.utils.set_random_seed`) is set before each model is built, TensorFlow's op
determinism is switched on, and every random crop comes from `numpy.random.default_rng([seed, fold,
epoch])`; the same seed on the same machine and thread count gives the same model. TensorFlow fixes its
thread pools on first use, so `threads` takes effect only in a process that has not run TensorFlow yet.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genreflow.core import WEIGHT_AVERAGE_MOMENTUM, FeatureConfig, TrainingSettings
from genreflow.files import write_json
from genreflow.models import import_tensorflow
from genreflow.models.directory import (
    CELL_FILE,
    FOLD_FILE,
    NORMALISATION_FILE,
    RESULT_FILE,
    CellInfo,
    fold_dir,
)
from genreflow.models.fused import fuse_batch_norms
from genreflow.models.persistence import is_keras, save_model
from genreflow.models.precision import device_description, dtype_policy, resolved_settings
from genreflow.models.registry import build_model, spec
from genreflow.models.spec import ModelSpec
from genreflow.storage.schema import CollectionTrack, StoreError, data_version
from genreflow.storage.store import FeatureSet, Store
from genreflow.tasks.features.clips import too_short
from genreflow.tasks.training.augment import genre_targets
from genreflow.tasks.training.curves import FoldCurves, hparams_of
from genreflow.tasks.training.dataset import (
    ClipStream,
    LabelledTrack,
    clip_count,
    epoch_batches,
    evaluation_plan,
    fit_band_normaliser,
    labelled_tracks,
    to_tf_dataset,
    training_clip_count,
)
from genreflow.tasks.training.progress import FoldTracking, Tracking
from genreflow.tasks.training.splits import MIN_GENRES, Fold, make_folds

logger = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "val_loss", "accuracy", "val_accuracy")
EXTRA_HISTORY_KEYS = ("learning_rate", "seconds")  # a network's, besides Keras' own: its curves need them
ALL_CLIPS = None  # crops_per_track for the array models: as many crops of a track as it holds clips


@dataclass(frozen=True)
class TrainingData:
    """Exactly what a cell learns from: the store, the features and one collection's usable tracks."""

    store: str
    feature_config: FeatureConfig
    collection: str  # the collection's folder
    tracks: tuple[CollectionTrack, ...]

    @property
    def data_version(self) -> str:
        return data_version(self.feature_config.identity(), self.tracks)

    @classmethod
    def from_store(cls, location: str, feature_config: FeatureConfig, collection: str | None = None) -> TrainingData:
        """The usable tracks of a collection the store has recorded: the one named by its folder, or the
        store's only one. Tracks quarantined or never extracted are left out (extraction reported them)."""
        store = Store.open(location)
        record = store.collection(collection) if collection else None
        known = [known.root for known in store.collections()]
        if collection and record is None:
            raise StoreError(f"{location} has no collection {collection}; it knows {known or 'none'}")
        if record is None and len(known) != 1:
            raise StoreError(
                f"{location} holds {len(known)} collections ({', '.join(known) or 'none'}): name one with --data"
                if known
                else f"{location} holds no collection: extract one into it first (genreflow extract)"
            )
        record = record or store.collections()[0]
        ready = store.feature_set(feature_config).usable(record.tracks).ready
        return cls(location, feature_config, record.root, tuple(ready))


def split_by_length(
    tracks: Sequence[LabelledTrack], clip_frames: int, feature_config: FeatureConfig
) -> tuple[list[LabelledTrack], dict[str, str]]:
    """Tracks long enough for a clip (`genreflow.tasks.features.clips.too_short`), and why the others are
    excluded."""
    reasons = [(track, too_short(track.n_frames, clip_frames, feature_config)) for track in tracks]
    kept = [track for track, reason in reasons if reason is None]
    excluded = {track.track_id: reason for track, reason in reasons if reason is not None}
    return kept, excluded


def train_cell(
    data: TrainingData,
    model: str | ModelSpec,
    clip_seconds: float,
    seed: int,
    split: str,
    out_dir: str | Path,
    settings: TrainingSettings | None = None,
    threads: int | None = None,
    tracking: Tracking | None = None,
) -> Path:
    """Train `model` (a registered name, or the entry itself) on `clip_seconds` clips of `data`'s tracks into
    `out_dir` (the model directory), as `settings` say (the defaults if None); its precision is resolved here,
    on the device that trains, and cell.json records the resolved one. With `tracking`'s checkpoint, folds it
    holds finished are copied, not trained, and a fold it holds half-trained continues from its last epoch."""
    model_spec, settings = spec(model), settings or TrainingSettings()
    settings = resolved_settings(settings, model_spec)
    settings.check()
    _check_feature_set(model_spec, data)
    clip_frames = model_spec.clip_frames(clip_seconds, data.feature_config)
    store = FeatureSet.open(data.store, data.feature_config)
    stored = labelled_tracks(store, data.tracks)
    usable, excluded = split_by_length(stored, clip_frames, data.feature_config)
    _check_trainable(stored, usable, clip_seconds, data)
    for track_id, reason in excluded.items():
        logger.warning("%s %gs: %s is left out: %s", model_spec.name, clip_seconds, track_id, reason)
    configure_tensorflow(threads)
    folds = make_folds({track.track_id: track.genre for track in usable}, split, seed)
    cell = CellInfo(
        model=model_spec.name,
        clip_seconds=float(clip_seconds),
        clip_frames=clip_frames,
        seed=seed,
        split=split,
        genres=sorted({track.genre for track in usable}),
        feature_config=data.feature_config,
        data_version=data.data_version,
        store=data.store,
        collection=data.collection,
        tracks=list(data.tracks),
        excluded=excluded,
        folds=len(folds),
        settings=settings,
        device=device_description(),
    )
    model_dir = _fresh_model_dir(Path(out_dir))
    by_id = {track.track_id: track for track in usable}
    tracking = tracking or Tracking()
    with _removed_unless_complete(model_dir):
        for index, fold in enumerate(folds):
            directory = fold_dir(model_dir, index)
            if tracking.checkpoint and tracking.checkpoint.restore_fold(index, directory):
                tracking.log.info(
                    "%s fold %d: trained before a restart, kept (%s)", cell.name, index, tracking.checkpoint.url
                )
                continue
            with _fold_tracking(cell, tracking, index, len(folds)) as fold_tracking:
                _train_fold(cell, model_spec, store, by_id, fold, index, directory, fold_tracking)
            if tracking.checkpoint:
                tracking.checkpoint.save_fold(index, directory)
        cell.save(model_dir)
    return model_dir


@contextlib.contextmanager
def _fold_tracking(cell: CellInfo, tracking: Tracking, index: int, folds: int) -> Iterator[FoldTracking]:
    """A fold's share of the cell's tracking: its checkpoint, its own learning curves (closed afterwards)."""
    curves = (
        FoldCurves(f"{tracking.curves_url.rstrip('/')}/fold-{index}", hparams_of(cell)) if tracking.curves_url else None
    )
    try:
        yield FoldTracking(cell.name, index, folds, tracking.checkpoint, curves, tracking.on_epoch, tracking.log)
    finally:
        if curves is not None:
            curves.close()


@contextlib.contextmanager
def _removed_unless_complete(model_dir: Path) -> Iterator[None]:
    """A training that fails (a full disk, an interrupt) takes its fold folders with it: nothing of it stays to
    fill a disk or be mistaken for a model."""
    try:
        yield
    except BaseException:
        _fresh_model_dir(model_dir)
        raise


def _check_trainable(
    stored: Sequence[LabelledTrack], usable: Sequence[LabelledTrack], clip_seconds: float, data: TrainingData
) -> None:
    """Refuse data a classifier cannot honestly learn from: no track long enough, or one genre only."""
    if not stored:
        raise ValueError(f"no tracks to train on in {data.collection}")
    if not usable:
        config = data.feature_config
        longest = config.seconds_for(max(track.n_frames for track in stored))
        raise ValueError(
            f"every track of {data.collection} is shorter than a {clip_seconds:g} s clip (the longest lasts "
            f"{longest:.1f} s); choose a shorter clip"
        )
    genres = sorted({track.genre for track in usable})
    if len(genres) < MIN_GENRES:
        raise ValueError(
            f"{data.collection} has {len(genres)} genre ({', '.join(genres)}) with tracks of at least "
            f"{clip_seconds:g} s; a genre classifier needs at least {MIN_GENRES}"
        )


def _check_feature_set(model_spec: ModelSpec, data: TrainingData) -> None:
    """A model trains on the kind of features it was made for (musicnn on its embeddings, the rest on log-mels)."""
    wanted, given = model_spec.feature_config, data.feature_config
    if (wanted.compression, wanted.embedding) != (given.compression, given.embedding):
        raise ValueError(
            f"{model_spec.name} trains on the {model_spec.features} feature set, not on the one given "
            f"(feature id {given.identity()}): extract it with `genreflow extract --features {model_spec.features}`"
        )


def configure_tensorflow(threads: int | None) -> None:
    """Deterministic ops, GPU memory taken as needed (several cells may share a GPU), and `threads` for
    TensorFlow's pools if it has not started them yet."""
    tf = import_tensorflow()
    tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: it keeps the setting it started with
            tf.config.experimental.set_memory_growth(gpu, True)
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already running; its pools keep the size they were started with
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            logger.warning("TensorFlow already runs with %s threads; %d requested", current or "default", threads)


def _fresh_model_dir(model_dir: Path) -> Path:
    """`model_dir`, emptied of an earlier training's files (and only of those)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for stale in [model_dir / CELL_FILE, model_dir / RESULT_FILE]:
        stale.unlink(missing_ok=True)
    for stale_fold in model_dir.glob("fold-*"):
        shutil.rmtree(stale_fold)
    return model_dir


def _train_fold(
    cell: CellInfo,
    model_spec: ModelSpec,
    store: FeatureSet,
    by_id: dict[str, LabelledTrack],
    fold: Fold,
    index: int,
    directory: Path,
    tracking: FoldTracking,
) -> None:
    """Fit the normalisation and the model on one fold's training tracks; save both with the fold's facts."""
    started = time.perf_counter()
    directory.mkdir(parents=True)
    normaliser = fit_band_normaliser(store, [by_id[track_id].key for track_id in fold.train])
    normaliser.save(directory / NORMALISATION_FILE)
    model = _fresh_model(cell, model_spec)
    stream = ClipStream(store, cell.clip_frames, normaliser, cell.settings.batch_size, cell.settings.memory_cap_mb)
    tracks = FoldTracks(
        train=[by_id[track_id] for track_id in fold.train],
        valid=[by_id[track_id] for track_id in fold.valid],
        genre_index={genre: position for position, genre in enumerate(cell.genres)},
        seed=(cell.seed, index),
    )
    logger.info("%s fold %d: %d training, %d validation tracks", cell.model, index, len(fold.train), len(fold.valid))
    history, seconds_before_restart = _fit(model, stream, tracks, cell.settings, tracking)
    save_model(model, directory)
    facts = {
        "fold": index,
        **asdict(fold),
        "epochs_run": max(1, len(history["loss"])),  # the baseline makes one pass over its crops
        "train_seconds": round(time.perf_counter() - started + seconds_before_restart, 3),
        "history": history,
    }
    write_json(directory / FOLD_FILE, facts)


@dataclass(frozen=True)
class FoldTracks:
    """One fold's training and validation tracks, the genre numbering, and the seed of its random crops."""

    train: list[LabelledTrack]
    valid: list[LabelledTrack]
    genre_index: dict[str, int]
    seed: tuple[int, int]


def _fresh_model(cell: CellInfo, model_spec: ModelSpec) -> Any:
    """The cell's untrained model, with Keras' random state reset to the cell's seed."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(cell.seed)
    with dtype_policy(cell.settings.precision), _initialisers_seeded(cell.seed):
        return build_model(model_spec, (cell.clip_frames, cell.feature_config.width), len(cell.genres))


@contextlib.contextmanager
def _initialisers_seeded(seed: int) -> Iterator[None]:
    """Keras draws the seed of every unseeded initialiser and dropout layer from Python's global `random`, which
    other threads of the process draw from too (a Dask worker's event loop: Tornado's callback jitter), so a
    cell on a worker could start from other weights than its seed gives. While the model is built, those
    seeds come from a generator of the cell's own."""
    from keras.src.random import seed_generator  # where Keras keeps its reference to the `random` module

    saved = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = saved


def _fit(
    model: Any, stream: ClipStream, tracks: FoldTracks, settings: TrainingSettings, tracking: FoldTracking
) -> tuple[dict[str, list[float]], float]:
    """Train; returns the per-epoch history (empty lists for the array models, which are not trained in epochs)
    and the seconds a resumed fold had trained before its restart.
    The validation tracks choose a network's epoch; the array models have no epochs to choose, so they are
    fitted on the training and validation tracks together (their test tracks stay unseen), once, on as many
    random crops of each track as it holds clips: the epoch budget and augmentation are the networks'."""
    if not is_keras(model):
        fitting = [*tracks.train, *tracks.valid]
        model.fit_batches(epoch_batches(stream, fitting, tracks.genre_index, ALL_CLIPS, tracks.seed)())
        return {name: [] for name in HISTORY_KEYS}, 0.0
    return _fit_keras(model, stream, tracks, settings, tracking)


def _fit_keras(
    model: Any, stream: ClipStream, tracks: FoldTracks, settings: TrainingSettings, tracking: FoldTracking
) -> tuple[dict[str, list[float]], float]:
    """Adam (or AdamW) on cross-entropy at the settings' learning rate and schedule; with early stopping,
    training ends once the validation loss has not fallen for `patience` epochs and keeps the best epoch's
    weights, without it, every epoch runs and the last weights (or their average over the last steps) are
    kept, trained on the validation tracks too unless they are held out. A fold the checkpoint holds
    half-trained continues after its last saved epoch (`recorder`)."""
    from genreflow.tasks.training.recorder import EpochRecorder, resumable_state

    learning = tracks.train if settings.hold_out_validation else [*tracks.train, *tracks.valid]
    train_clips = training_clip_count(learning, stream.clip_frames, settings.crops_per_track)
    steps, genres = stream.batch_count(train_clips), len(tracks.genre_index)
    compile_for_training(model, learning_rate_of(settings, steps), **regularisation_of(settings))
    resumed = resumable_state(model, tracking, settings.epochs)
    done = resumed.epochs_done if resumed else 0
    crops, augment = settings.crops_per_track, settings.augment
    training = epoch_batches(
        stream, learning, tracks.genre_index, crops, tracks.seed, augment, first_epoch=done, as_targets=True
    )
    train_data = to_tf_dataset(training, stream, steps, genres)
    valid_data = validation_dataset(stream, tracks) if settings.hold_out_validation else None
    callbacks = training_callbacks(settings)
    recorder = EpochRecorder(tracking, settings.epochs, _early_stopping(callbacks), resumed)
    if tracking.curves is not None:
        tracking.curves.start(recorder.history)
    first = settings.epochs if resumed and resumed.finished else done  # finished: only early stopping's ending
    model.fit(
        train_data, validation_data=valid_data, epochs=settings.epochs, initial_epoch=first,
        callbacks=[*callbacks, recorder], shuffle=False, verbose=0,
    )  # fmt: skip
    history = {name: recorder.history.get(name, []) for name in (*HISTORY_KEYS, *EXTRA_HISTORY_KEYS)}
    return history, sum(history["seconds"][:done])


def validation_dataset(stream: ClipStream, tracks: FoldTracks) -> Any:
    """Every clip of the fold's validation tracks, as genre probabilities."""
    plan = evaluation_plan(tracks.valid, tracks.genre_index, stream.clip_frames)
    genres = len(tracks.genre_index)
    return to_tf_dataset(
        lambda: genre_targets(stream.batches(plan), genres), stream, stream.batch_count(clip_count(plan)), genres
    )


def _early_stopping(callbacks: list[Any]) -> Any | None:
    import keras

    return next((callback for callback in callbacks if isinstance(callback, keras.callbacks.EarlyStopping)), None)


def training_callbacks(settings: TrainingSettings) -> list[Any]:
    """With early stopping, a stop after `patience` epochs without a lower validation loss, the best epoch's
    weights restored; none without it (each epoch is logged by `recorder.EpochRecorder`)."""
    import keras

    if not settings.early_stopping:
        return []
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience, restore_best_weights=True)]


def learning_rate_of(settings: TrainingSettings, steps_per_epoch: int) -> Any:
    """The optimiser's learning rate: the settings' own, or for `cosine` a linear warm-up from 0 over the first
    epoch to it, then a cosine decay to 0 at the last step."""
    if settings.schedule == "constant":
        return settings.learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, steps_per_epoch * (settings.epochs - 1)),
        warmup_target=settings.learning_rate,
        warmup_steps=steps_per_epoch,
    )


def regularisation_of(settings: TrainingSettings) -> dict[str, float]:
    """The settings `compile_for_training` takes besides the learning rate."""
    return {
        "label_smoothing": settings.label_smoothing,
        "weight_decay": settings.weight_decay,
        "average_weights": settings.average_weights,
    }


def compile_for_training(
    model: Any,
    learning_rate: Any,
    fused_batch_norm: bool = True,
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    average_weights: bool = False,
) -> None:
    """Adam (AdamW with a `weight_decay`) on the cross-entropy against genre probabilities (one-hot or blended
    targets, smoothed by `label_smoothing`) with an accuracy metric, every variable the train step updates made
    now; `learning_rate` a number or a Keras schedule. With `average_weights` the optimiser keeps a moving
    average of the weights, which `fit` puts into the model when it ends.

    Keras makes the optimizer's slots and a metric named by string ("accuracy") inside the train step's first
    trace; a tf.function that creates variables is traced a second time, and tracing is most of a short
    training's cost (a short CRNN cell: 16 s -> 10 s, docs/design.md). What is trained does not change.
    Batch normalisation trains through TensorFlow's fused kernel (`genreflow.models.fused`: the same maths,
    the CNN's step 2.5x faster, docs/benchmarks.md); `fused_batch_norm=False` keeps Keras' primitive ops.
    """
    import keras

    if fused_batch_norm:
        fuse_batch_norms(model)

    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")  # the genre of the largest target
    averaging = {"use_ema": average_weights, "ema_momentum": WEIGHT_AVERAGE_MOMENTUM}
    optimizer = (
        keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **averaging)
        if weight_decay
        else keras.optimizers.Adam(learning_rate, **averaging)
    )
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])
    model.optimizer.build(model.trainable_variables)
