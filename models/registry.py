"""The table of models genreflow trains: name -> `ModelSpec` (builder, display name, shortest clip, features).

Adding a model is adding an entry to `MODELS` (the tests add one with `register`); its order is the order
reports list models in. A cell's cache key holds its own model's entry by value, not this module's source, so
editing one entry retrains that model's cells and no other (flows/cache_keys.py).
"""

from __future__ import annotations

from typing import Any

from genreflow.core import MUSICNN
from genreflow.models.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("baseline", "genreflow.models.baseline:build", "baseline", min_frames=1, neural=False),
        # three time pools of 2; batches of 16: on gtzan-mini (kfold:5, 5 s) the track accuracy over seeds 0-2 went
        # 0.748 (spread 0.143) -> 0.814 (0.071) against 32, an epoch costing the same (docs/benchmarks.md)
        ModelSpec("cnn", "genreflow.models.cnn:build", "CNN", min_frames=8, batch_size=16),
        # a cosine schedule, every epoch run: on gtzan-mini (kfold:5, 5 s) the track accuracy over seeds 0-2 went
        # 0.572 (spread 0.100) -> 0.695 (0.058) against a constant rate and early stopping (docs/benchmarks.md)
        ModelSpec("rnn", "genreflow.models.rnn:build", "RNN", min_frames=1, schedule="cosine", early_stopping=False),
        # four time pools of 2; mixup: on gtzan-mini (kfold:5, 5 s) the track accuracy over seeds 0-2 went 0.767
        # (spread 0.043) -> 0.795 (0.043), two seeds up and one down a track (docs/benchmarks.md); on the CNN it lost
        ModelSpec("crnn", "genreflow.models.crnn:build", "CRNN", min_frames=16, augment="mixup"),
        ModelSpec(
            "musicnn", "genreflow.models.musicnn:build", "musicnn (MSD)", min_frames=1, features=MUSICNN, neural=False
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """Every registered model, in the registry's order."""
    return tuple(MODELS)


def spec(model: str | ModelSpec) -> ModelSpec:
    """The registry entry of a model named by `model` (or `model` itself); an unknown name is refused with the
    known ones. Work sent to another process carries the entry itself, so a model registered only where a run
    started (a test's, a user's) is built there too."""
    if isinstance(model, ModelSpec):
        return model
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return MODELS[model]


def register(model: ModelSpec) -> None:
    """Add (or replace) a model: how a user, or a test, adds one."""
    MODELS[model.name] = model


def build_model(model: str | ModelSpec, input_shape: tuple[int, int], n_genres: int) -> Any:
    """The untrained model `model`."""
    return spec(model).build(input_shape, n_genres)


def own_values(setting: str) -> str:
    """Each network's own value of a training setting (genreflow.core.NETWORK_OWN), for help texts:
    'cnn 16, rnn 32, crnn 32'; booleans as on or off."""
    values = ((entry.name, getattr(entry, setting)) for entry in MODELS.values() if entry.neural)
    return ", ".join(f"{name} {_word(value)}" for name, value in values)


def _word(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)
