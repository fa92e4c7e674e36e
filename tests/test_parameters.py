"""A run's parameters are declared once (genreflow/parameters.py): the command line, the flow's signature, the
Prefect UI's form and the nightly deployment's options all come from that one declaration."""

from __future__ import annotations

import argparse

from genreflow.parameters import FIELDS, RunParameters, add_run_options, default_of, parameters_from


def test_the_flow_takes_exactly_the_declared_parameters_with_their_defaults_and_descriptions() -> None:
    from genreflow.flows.pipeline import genreflow_flow

    schema = genreflow_flow.parameters.model_dump()
    properties = schema["properties"]
    assert list(properties) == list(FIELDS)
    for name, field in FIELDS.items():
        assert properties[name]["description"] == field.description, name
        assert properties[name].get("default") == default_of(name), name
    assert properties["models"]["items"]["enum"] == ["baseline", "cnn", "rnn", "crnn", "musicnn"]  # UI choices
    assert properties["precision"]["enum"] == ["auto", "float32", "bfloat16"]
    assert "kfold" in properties["split"]["pattern"]
    assert schema["required"] == []


def test_the_command_line_has_one_option_per_parameter_and_names_each_default_once() -> None:
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    options = [action for action in parser._actions if action.dest in FIELDS]
    assert [action.dest for action in options] == list(FIELDS)
    for action in options:
        assert action.help.count("(default: ") == 1, action.help
    help_text = parser.format_help()
    assert "--clip-seconds CLIP_SECONDS [CLIP_SECONDS ...]" in help_text and "(default: 1 5 15 30)" in help_text


def test_settings_left_open_are_each_networks_own_and_the_help_names_them() -> None:
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    settings = parameters_from(parser.parse_args([])).training_settings()
    assert (settings.batch_size, settings.schedule, settings.early_stopping, settings.augment) == (None,) * 4
    help_text = " ".join(parser.format_help().split())
    assert "each network's own: cnn constant, rnn cosine, crnn constant." in help_text
    assert "each network's own: cnn on, rnn off, crnn on." in help_text
    assert "each network's own: cnn none, rnn none, crnn mixup." in help_text


def test_options_not_given_keep_the_declared_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    parameters = parameters_from(parser.parse_args(["--models", "cnn", "--epochs", "3"]))
    assert parameters == RunParameters(models=["cnn"], epochs=3)
    assert parameters.clip_seconds == default_of("clip_seconds") and parameters.split == "stratified"


def test_the_nightly_deployment_takes_the_same_run_options() -> None:
    from genreflow.deployments.nightly import build_parser

    dests = {action.dest for action in build_parser()._actions}
    assert set(FIELDS) <= dests and {"cron", "timezone"} <= dests


def test_options_with_named_choices_parse_into_the_training_settings_and_refuse_others() -> None:
    import pytest

    from genreflow.core import TrainingSettings

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_run_options(parser)
    given = ["--precision", "float32", "--augment", "specaugment+mixup", "--crops-per-track", "2", "--batch-size",
             "8", "--schedule", "cosine", "--early-stopping", "false", "--label-smoothing", "0.1", "--weight-decay",
             "0.01", "--hold-out-validation", "false", "--average-weights", "true"]  # fmt: skip
    settings = parameters_from(parser.parse_args(given)).training_settings()
    assert settings == TrainingSettings(
        batch_size=8, crops_per_track=2, precision="float32", augment="specaugment+mixup", schedule="cosine",
        early_stopping=False, label_smoothing=0.1, weight_decay=0.01, hold_out_validation=False,
        average_weights=True,
    )  # fmt: skip
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'cutmix'"):
        parser.parse_args(["--augment", "cutmix"])
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'linear'"):  # one that may be left open too
        parser.parse_args(["--schedule", "linear"])
    with pytest.raises(argparse.ArgumentError, match="expected true or false, got 'maybe'"):
        parser.parse_args(["--early-stopping", "maybe"])
