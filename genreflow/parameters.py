"""A run's parameters, declared once: the `genreflow run` options, the flow's signature, the nightly
deployment's options and the Prefect UI's run form (descriptions, allowed values) all come from here.

Cheap to import (pydantic and the model registry, no Prefect, no TensorFlow), so `--help` and the checks
before a run stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.fields import FieldInfo

from genreflow.core import (
    AUGMENTATIONS,
    DEFAULT_CLIP_SECONDS,
    DEFAULT_CROPS_PER_TRACK,
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    PRECISIONS,
    SCHEDULES,
    SPLIT_PATTERN,
    TrainingSettings,
)
from genreflow.models.registry import model_names, own_values

# The UI offers the registered models as choices and checks a split's form; the run itself checks both with its
# own messages (flows/preflight.py), against the registry as it is when the run starts.
ModelName = Annotated[str, Field(json_schema_extra={"enum": list(model_names())})]
SplitName = Annotated[str, WithJsonSchema({"type": "string", "pattern": SPLIT_PATTERN})]
Precision = Literal[PRECISIONS]  # genreflow.core.PRECISIONS, which the UI offers as choices
Augmentation = Literal[AUGMENTATIONS]
Schedule = Literal[SCHEDULES]


class RunParameters(BaseModel):
    """What one run of the genreflow flow does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field("synthetic", description="A GTZAN-layout folder <root>/<genre>/<file>, or 'synthetic' for "
                      "the built-in synthetic collection.")  # fmt: skip
    tracks_per_genre: int = Field(20, ge=1, description="Tracks per genre of the synthetic collection.")
    models: list[ModelName] = Field(
        default_factory=lambda: list(model_names()), min_length=1,
        description=f"Models to train, each at every clip length and seed: {', '.join(model_names())}.",
    )  # fmt: skip
    clip_seconds: list[float] = Field(
        default_factory=lambda: list(DEFAULT_CLIP_SECONDS), min_length=1, description="Clip lengths in seconds."
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="One training per seed.")
    split: SplitName = Field("stratified", description="How tracks are split: stratified, paper, fault-filtered "
                             "or kfold:K (K folds, K >= 2).")  # fmt: skip
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, description="Most epochs per training (early stopping on validation).")
    batch_size: int | None = Field(None, ge=1, description="Clips per training step (none: each network's own: "
                                   f"{own_values('batch_size')}).")  # fmt: skip
    precision: Precision = Field("auto", description="Training precision: auto (bfloat16 only for the models and "
                                 "CPUs/GPUs where it measured faster), float32 or bfloat16.")  # fmt: skip
    crops_per_track: int | None = Field(
        DEFAULT_CROPS_PER_TRACK, ge=1, description="A network's random crops of each training track per epoch, the "
        "same at every clip length (overlapping where a track holds fewer); none: as many as the track holds.",
    )  # fmt: skip
    augment: Augmentation | None = Field(None, description="What training does to each crop: none, specaugment "
                                         "(two band and two time masks per clip), mixup (each clip and its target "
                                         "blended with another's), or specaugment+mixup; none: each network's own: "
                                         f"{own_values('augment')}.")  # fmt: skip
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="The share of each training target spread evenly "
                                   "over the genres.")  # fmt: skip
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW) per step, scaled by the "
                                "learning rate; 0: Adam.")  # fmt: skip
    schedule: Schedule | None = Field(None, description="The learning rate over a training: constant, or cosine "
                                      "(one epoch's warm-up, then a cosine decay to 0 at the last epoch); none: each "
                                      f"network's own: {own_values('schedule')}.")  # fmt: skip
    early_stopping: bool | None = Field(None, description="Stop a network once its validation loss has not fallen "
                                        f"for {DEFAULT_PATIENCE} epochs and keep its best epoch (false: run every "
                                        "epoch, keep the last); none: each network's own: "
                                        f"{own_values('early_stopping')}.")  # fmt: skip
    hold_out_validation: bool = Field(True, description="Hold each fold's validation tracks out of a network's "
                                      "training (false, with early stopping off: train on them too).")  # fmt: skip
    average_weights: bool = Field(False, description="With early stopping off, end each network on the moving "
                                  "average of its weights over about its last 100 steps instead of its last "
                                  "weights.")  # fmt: skip
    store: str = Field("runs/store.zarr", description="The Zarr store: a local path or an fsspec URL.")
    cache: str = Field("runs/cache", description="Persisted task results and trained models: a local path or an "
                       "fsspec URL.")  # fmt: skip
    out: str = Field("runs", description="Folder of run folders: each run writes OUT/<run name>/, OUT/latest "
                     "links the newest.")  # fmt: skip
    dask_address: str | None = Field(None, description="An existing Dask scheduler (none: a local cluster).")
    workers: int | None = Field(None, ge=1, description="Local cluster workers for extraction (none: one per core).")
    train_slots: int | None = Field(
        None, ge=1, description="Cells trained at once on a local cluster, the cores shared among them (none: one "
        "per two cores, each on two threads: as fast as one per core where measured, with half the memory).",
    )  # fmt: skip

    def training_settings(self) -> TrainingSettings:
        """How every cell of the run trains: the parameters named as `TrainingSettings`' fields, the others at
        their defaults."""
        names = [field.name for field in dataclasses.fields(TrainingSettings) if field.name in type(self).model_fields]
        return TrainingSettings(**{name: getattr(self, name) for name in names})

    def locations(self) -> list[str]:
        """The folders (or URLs) the run writes into."""
        return [self.out, self.cache, self.store]


FIELDS: dict[str, FieldInfo] = RunParameters.model_fields


def default_of(name: str) -> Any:
    """A parameter's default value."""
    return FIELDS[name].get_default(call_default_factory=True)


def with_run_parameters(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function(**parameters)` given the signature and docstring of RunParameters' fields (keyword-only, with
    their types and defaults): what Prefect reads to validate a run and to draw its form."""
    parameters = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default_of(name), annotation=field.rebuild_annotation()
        )
        for name, field in FIELDS.items()
    ]
    function.__signature__ = inspect.Signature(parameters, return_annotation=dict[str, Any])
    summary = inspect.getdoc(function) or ""
    arguments = "\n".join(f"    {name}: {field.description}" for name, field in FIELDS.items())
    function.__doc__ = f"{summary}\n\nArgs:\n{arguments}\n"
    return function


# ---- the command line ---------------------------------------------------------------------------------------
def add_run_options(parser: argparse._ActionsContainer) -> None:
    """One option per parameter (`--clip-seconds` for clip_seconds), its help ending with its default once."""
    for name, field in FIELDS.items():
        element, many = _option_type(field.annotation)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=element,
            choices=_choices(field.annotation),
            nargs="+" if many else None,
            default=None,  # unset options take the model's default
            metavar=name.upper(),
            help=f"{field.description} (default: {_default_text(name)})",
        )


def parameters_from(args: argparse.Namespace) -> RunParameters:
    """The parameters the options given ask for; validated, the others at their defaults."""
    given = {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
    return RunParameters(**given)


def one_line(error: Exception) -> str:
    """An error for the terminal in one line: a validation error's first complaint, named by its option."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
        return f"{option}: {first['msg']}"
    return str(error)


def _option_type(annotation: Any) -> tuple[Callable[[str], Any], bool]:
    """The converter of one option value, and whether the option takes several."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return _option_type(item)[0], True
    if origin in (typing.Union, types.UnionType):
        return _option_type(_not_none(annotation))
    if origin is Annotated:
        return _option_type(typing.get_args(annotation)[0])
    if origin is Literal:  # one of named strings: argparse checks the choice
        return str, False
    if annotation is bool:
        return _yes_or_no, False
    return annotation, False


def _choices(annotation: Any) -> tuple[str, ...] | None:
    """The values an option of named strings (a Literal, or one that may be None) takes; None for others."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = _not_none(annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def _not_none(optional: Any) -> Any:
    """The type an optional annotation (`X | None`) holds when it holds a value."""
    return next(arg for arg in typing.get_args(optional) if arg is not type(None))


def _yes_or_no(text: str) -> bool:
    """A boolean option's value: true/yes/1 or false/no/0 (argparse's `bool` would take 'false' for True)."""
    value = text.strip().lower()
    if value not in ("true", "yes", "1", "false", "no", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "yes", "1")


def _default_text(name: str) -> str:
    value = default_of(name)
    if value is None:
        return "none"
    return (
        " ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
        if isinstance(value, list)
        else str(value)
    )
