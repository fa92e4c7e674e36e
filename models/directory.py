"""A trained cell's model directory: its file names, `cell.json` and how a fold's model is loaded.

    cell.json            what was trained on what: model, clip length and frames, seed, split, genres,
                         feature configuration and id, the collection's folder, its tracks (id, genre,
                         key) and data version, the excluded tracks, store, settings, number of folds.
                         Written last: a directory without it is an interrupted training.
    fold-<k>/            one per training: only fold-0 for stratified / paper / fault-filtered, K of them
                         for kfold:K (fold k tests the k-th fold's tracks and trains on the others)
        model.keras      the network (baseline.npz for the baseline, musicnn-head.npz for musicnn's head)
        normalisation.json   per-band mean and std of this fold's training tracks
        fold.json        this fold's train / valid / test track ids, epochs run, seconds, Keras history
    result.json          written by the evaluation

This is the layout's one description (docs/CONTRACTS.md lists the JSON fields). Everything in it is data: JSON,
a Keras file loaded in safe mode, arrays read without pickle (models.persistence). Training writes it;
evaluation and prediction read it, and need nothing of training to do so. It may live on local disk or behind
any fsspec URL: `publish` uploads one, `local_copy` brings one down.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genreflow.core import FeatureConfig, TrainingSettings, cell_name
from genreflow.files import write_json
from genreflow.models.normalisation import BandNormaliser
from genreflow.models.persistence import Classifier, damaged, load_model, model_file
from genreflow.storage.schema import CollectionTrack

CELL_FILE = "cell.json"
FOLD_FILE = "fold.json"
NORMALISATION_FILE = "normalisation.json"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class CellInfo:
    """The contents of cell.json: everything evaluation and prediction need besides the fold folders."""

    model: str
    clip_seconds: float
    clip_frames: int
    seed: int
    split: str
    genres: list[str]
    feature_config: FeatureConfig
    data_version: str
    store: str
    collection: str
    tracks: list[CollectionTrack]
    excluded: dict[str, str]  # track id -> why it was not trained or tested on
    folds: int
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    device: str = "cpu"  # what trained it: "cpu: <model>" or "gpu:<capability> <name>"

    @property
    def name(self) -> str:
        """The cell's name in logs and folders: `cnn-5s-seed0`."""
        return cell_name(self.model, self.clip_seconds, self.seed)

    def save(self, model_dir: Path) -> None:
        values = asdict(self)
        values["feature_id"] = self.feature_config.identity()
        values["tracks"] = [track.to_json() for track in self.tracks]
        write_json(model_dir / CELL_FILE, values)

    @classmethod
    def load(cls, model_dir: Path) -> CellInfo:
        path = Path(model_dir) / CELL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a trained genreflow model (no {CELL_FILE}; was training interrupted?)"
            )
        try:
            values = json.loads(path.read_text())
            values.pop("feature_id")
            values["feature_config"] = FeatureConfig.from_dict(values["feature_config"])
            values["settings"] = TrainingSettings(**values["settings"])
            values["tracks"] = [CollectionTrack.from_json(track) for track in values["tracks"]]
            return cls(**values)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
            raise damaged(path, f"{type(error).__name__}: {error}") from error

    def tracks_by_id(self, track_ids: Sequence[str]) -> list[CollectionTrack]:
        """The cell's tracks of the given ids, in that order."""
        by_id = {track.track_id: track for track in self.tracks}
        return [by_id[track_id] for track_id in track_ids]


def fold_dir(model_dir: Path, fold: int) -> Path:
    return Path(model_dir) / f"fold-{fold}"


def load_member(directory: Path, cell: CellInfo) -> tuple[Classifier, BandNormaliser]:
    """One fold's model and the normalisation it was trained with, checked against cell.json: its input is
    the cell's clip and its output one probability per genre the cell lists."""
    normalisation = Path(directory) / NORMALISATION_FILE
    try:
        normaliser = BandNormaliser.load(normalisation)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise damaged(normalisation, f"unreadable ({type(error).__name__}: {error})") from error
    model = load_model(directory)
    if normaliser.mean.shape != (cell.feature_config.width,):
        raise damaged(
            normalisation, f"{normaliser.mean.shape[0]} bands, not the {cell.feature_config.width} of {CELL_FILE}"
        )
    clip = np.zeros((1, cell.clip_frames, cell.feature_config.width), np.float32)
    outputs = np.asarray(model.predict_on_batch(clip)).shape[-1]
    if outputs != len(cell.genres):
        raise damaged(model_file(directory), f"it predicts {outputs} genres, but {CELL_FILE} lists {len(cell.genres)}")
    return model, normaliser


def is_remote(location: str | Path) -> bool:
    """Whether a model directory lives behind an fsspec URL (s3://, memory://, ...) rather than on local disk."""
    return "://" in str(location)


def publish(local: Path, destination: str) -> None:
    """Put the model directory `local` at the URL `destination`, replacing what was there: every file but
    cell.json first, cell.json last, so a reader never takes a half-uploaded directory for a trained model."""
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(destination)
    if filesystem.exists(path):
        filesystem.rm(path, recursive=True)
    files = sorted(item for item in local.rglob("*") if item.is_file())
    for item in sorted(files, key=lambda item: item.name == CELL_FILE):
        filesystem.put_file(str(item), f"{path}/{item.relative_to(local).as_posix()}")


@contextmanager
def local_copy(location: str | Path) -> Iterator[Path]:
    """The model directory at `location` as a local folder: itself, or a downloaded copy kept for the block."""
    if not is_remote(location):
        yield Path(location)
        return
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(str(location))
    if not filesystem.exists(f"{path}/{CELL_FILE}"):
        raise FileNotFoundError(f"{location} is not a trained genreflow model (no {CELL_FILE})")
    with tempfile.TemporaryDirectory(prefix="genreflow-model-") as scratch:
        filesystem.get(f"{path}/", f"{scratch}/", recursive=True)
        yield Path(scratch)
