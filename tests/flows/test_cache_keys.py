"""Code versions cover exactly what changes what a cell learns: checked on a copy of the project's own source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from genreflow.flows.cache_keys import (
    code_files,
    evaluation_files,
    installed_folders,
    module_closure,
    sources_hash,
    stable_hash,
    within,
)
from genreflow.models.registry import model_names, spec


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A copy of the source of every genreflow package, mapped as the installed ones are."""
    folders = {}
    for package, folder in installed_folders().items():
        target = tmp_path / folder.name
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
        folders[package] = target
    return folders


def cell_versions(tree: dict[str, Path]) -> dict[str, str]:
    return {model: sources_hash(code_files(spec(model).module, tree)) for model in model_names()}


def edit(tree: dict[str, Path], relative: str) -> None:
    """Change a file of the copied tree the way an edit would: its text differs afterwards."""
    path = next(folder.parent / relative for folder in tree.values() if (folder.parent / relative).is_file())
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize(
    "relative",
    [
        "genreflow/cli.py",
        "genreflow/commands/run.py",
        "genreflow/parameters.py",
        "tasks/report/document.py",
        "tasks/features/extract.py",
        "storage/maintenance.py",
        "flows/grid.py",
        "models/registry.py",
        "tasks/evaluation/evaluate.py",
    ],
)
def test_editing_what_does_not_train_keeps_every_cell(tree: dict[str, Path], relative: str) -> None:
    before = cell_versions(tree)
    edit(tree, relative)
    assert cell_versions(tree) == before


def test_editing_the_crnn_invalidates_only_the_crnn_cells(tree: dict[str, Path]) -> None:
    before = cell_versions(tree)
    edit(tree, "models/crnn.py")
    after = cell_versions(tree)
    assert [model for model in model_names() if after[model] != before[model]] == ["crnn"]


def test_editing_the_shared_blocks_invalidates_the_models_built_from_them(tree: dict[str, Path]) -> None:
    before = cell_versions(tree)
    edit(tree, "models/blocks.py")
    after = cell_versions(tree)
    assert sorted(model for model in model_names() if after[model] != before[model]) == ["cnn", "crnn", "rnn"]


@pytest.mark.parametrize(
    "relative", ["tasks/training/train.py", "tasks/training/dataset.py", "storage/store.py", "genreflow/core.py"]
)
def test_editing_training_or_the_data_pipeline_invalidates_every_cell(tree: dict[str, Path], relative: str) -> None:
    before = cell_versions(tree)
    edit(tree, relative)
    after = cell_versions(tree)
    assert all(after[model] != before[model] for model in model_names())


def test_editing_the_evaluation_redoes_evaluations_only(tree: dict[str, Path]) -> None:
    cells, evaluation = cell_versions(tree), sources_hash(evaluation_files(tree))
    edit(tree, "tasks/evaluation/evaluate.py")
    assert cell_versions(tree) == cells
    assert sources_hash(evaluation_files(tree)) != evaluation


def test_the_closure_follows_only_the_packages_it_is_told_to(tree: dict[str, Path]) -> None:
    modules = module_closure("genreflow.tasks.training.train", within(("genreflow.tasks.training",)), tree)
    assert "genreflow.tasks.training.dataset" in modules
    assert not any(name.startswith(("genreflow.storage", "genreflow.models")) for name in modules)


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
