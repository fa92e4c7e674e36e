"""Code versions cover exactly what changes what a cell learns: checked on a copy of the project's own source.

What a cell runs is found here independently of the key's own reading of the source: a fresh interpreter
imports the entry points and records every import between genreflow's modules as it runs. Every module so
reached must be in the key (a harmless edit changes it), except the named exclusions and other models' modules,
which must not be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreflow.flows.cache_keys import (
    EVALUATION_ENTRY,
    EXCLUDED,
    TRAINING_ENTRY,
    code_files,
    evaluation_files,
    installed_folders,
    model_modules,
    module_closure,
    module_file,
    sources_hash,
    stable_hash,
)
from genreflow.models.registry import model_names, spec

# Run in a fresh interpreter: imports the given modules while recording every import statement executed between
# genreflow's modules (already-loaded targets too), and prints that graph as JSON.
IMPORT_GRAPH = """
import builtins, importlib, json, sys
real_import, edges = builtins.__import__, set()
def ours(name):
    return name == "genreflow" or name.startswith("genreflow.")
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    module = real_import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "")
    if ours(importer) and ours(name):
        parts = name.split(".")
        targets = {".".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
        targets |= {f"{name}.{item}" for item in fromlist or () if f"{name}.{item}" in sys.modules}
        edges.update((importer, target) for target in targets if target != importer)
    return module
builtins.__import__ = recording_import
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(edges)))
"""


def import_graph(*roots: str) -> dict[str, set[str]]:
    """What each genreflow module imports when it runs, as a fresh interpreter importing `roots` records it."""
    output = subprocess.run(
        [sys.executable, "-c", IMPORT_GRAPH, *roots], capture_output=True, text=True, check=True
    ).stdout
    graph: dict[str, set[str]] = {}
    for importer, target in json.loads(output.splitlines()[-1]):
        graph.setdefault(importer, set()).add(target)
    return graph


def reached(graph: dict[str, set[str]], *roots: str) -> set[str]:
    """`roots` and every module they import, transitively, in `graph`."""
    found, pending = set(), list(roots)
    while pending:
        module = pending.pop()
        if module not in found:
            found.add(module)
            pending.extend(graph.get(module, ()))
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of the source of every genreflow package, mapped as the installed ones are."""
    root, folders = tmp_path_factory.mktemp("tree"), {}
    for package, folder in installed_folders().items():
        target = root / folder.name
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
        folders[package] = target
    return folders


def cell_versions(tree: dict[str, Path]) -> dict[str, str]:
    return {model: sources_hash(code_files(spec(model).module, tree)) for model in model_names()}


def evaluation_version_of(tree: dict[str, Path]) -> str:
    return sources_hash(evaluation_files(tree))


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """What each model's training, its own module, and the evaluation import when they run."""
    models = {model: spec(model).module for model in model_names()}
    graph = import_graph(TRAINING_ENTRY, EVALUATION_ENTRY, *models.values())
    return {
        **{model: reached(graph, TRAINING_ENTRY, module) for model, module in models.items()},
        **{f"{model} alone": reached(graph, module) for model, module in models.items()},
        "evaluation": reached(graph, EVALUATION_ENTRY),
    }


@pytest.fixture(scope="module")
def harmless_edit(tree: dict[str, Path]) -> Iterator:
    """Edit one file of the copied tree with a module-level assignment for the block's duration."""
    from contextlib import contextmanager

    @contextmanager
    def edit(path: Path) -> Iterator[None]:
        original = path.read_bytes()
        path.write_bytes(original + b"\n_harmless_edit = 1\n")
        try:
            yield
        finally:
            path.write_bytes(original)

    yield edit


def in_key(model: str, module: str, loaded: dict[str, set[str]]) -> bool:
    """Whether a module a model's training loads belongs in its key: all of them but the exclusions and the
    modules of other models that its own module does not use."""
    return module not in EXCLUDED and (module in loaded[f"{model} alone"] or module not in model_modules())


def test_every_module_a_cell_loads_is_in_its_key_and_no_other(
    tree: dict[str, Path], loaded: dict[str, set[str]], harmless_edit
) -> None:
    before = cell_versions(tree)
    modules = set().union(*(loaded[model] for model in model_names()))
    wrong = []
    for module in sorted(modules):
        with harmless_edit(module_file(module, tree)):
            after = cell_versions(tree)
        for model in model_names():
            if module not in loaded[model]:
                continue
            expected = in_key(model, module, loaded)
            if (after[model] != before[model]) != expected:
                wrong.append(f"{model}: {module} {'missed' if expected else 'wrongly included'}")
    assert not wrong, wrong
    assert modules >= {"genreflow.tasks.features.clips", "genreflow.tasks.training.dataset", *EXCLUDED}


def test_every_module_an_evaluation_loads_is_in_its_key(
    tree: dict[str, Path], loaded: dict[str, set[str]], harmless_edit
) -> None:
    before, wrong = evaluation_version_of(tree), []
    for module in sorted(loaded["evaluation"]):
        with harmless_edit(module_file(module, tree)):
            changed = evaluation_version_of(tree) != before
        if changed != (module not in EXCLUDED and module not in model_modules()):
            wrong.append(module)
    assert not wrong, wrong


def test_deferred_imports_are_followed_too(tree: dict[str, Path]) -> None:
    """Imports inside functions (musicnn's builder imports its network only when called) count as imports."""
    modules = module_closure(TRAINING_ENTRY, lambda name: name.startswith("genreflow"), tree)
    assert "genreflow.models.precision" in modules  # train.py imports it at the top; TensorFlow is deferred


def test_the_split_lists_training_reads_are_in_every_key(tree: dict[str, Path], harmless_edit) -> None:
    before = cell_versions(tree)
    lists = tree["genreflow.tasks"] / "training" / "fault_filtered" / "train_filtered.txt"
    with harmless_edit(lists):
        after = cell_versions(tree)
    assert all(after[model] != before[model] for model in model_names())


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
def test_editing_what_does_not_train_keeps_every_cell(tree: dict[str, Path], harmless_edit, relative: str) -> None:
    before = cell_versions(tree)
    path = next(folder.parent / relative for folder in tree.values() if (folder.parent / relative).is_file())
    with harmless_edit(path):
        assert cell_versions(tree) == before


def test_editing_the_crnn_invalidates_only_the_crnn_cells(tree: dict[str, Path], harmless_edit) -> None:
    before = cell_versions(tree)
    with harmless_edit(tree["genreflow.models"] / "crnn.py"):
        after = cell_versions(tree)
    assert [model for model in model_names() if after[model] != before[model]] == ["crnn"]


def test_editing_the_shared_blocks_invalidates_the_models_built_from_them(tree: dict[str, Path], harmless_edit) -> None:
    before = cell_versions(tree)
    with harmless_edit(tree["genreflow.models"] / "blocks.py"):
        after = cell_versions(tree)
    assert sorted(model for model in model_names() if after[model] != before[model]) == ["cnn", "crnn", "rnn"]


def test_editing_the_evaluation_redoes_evaluations_only(tree: dict[str, Path], harmless_edit) -> None:
    cells, evaluation = cell_versions(tree), evaluation_version_of(tree)
    with harmless_edit(tree["genreflow.tasks"] / "evaluation" / "evaluate.py"):
        assert cell_versions(tree) == cells
        assert evaluation_version_of(tree) != evaluation


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_a_models_registry_entry_is_in_its_own_cells_keys_by_value() -> None:
    from dataclasses import replace

    from genreflow.core import FeatureConfig, TrainingSettings
    from genreflow.flows.cells import training_key
    from genreflow.models.registry import register
    from genreflow.tasks.training.train import TrainingData

    data = TrainingData("store.zarr", FeatureConfig(), "collection", ())

    def key(model: str, **changed: object) -> str:
        settings = TrainingSettings(precision="float32", **changed)
        return training_key({"model": spec(model), "clip_seconds": 5.0, "seed": 0, "split": "stratified",
                             "settings": settings, "data": data, "cache_root": "anywhere"})  # fmt: skip

    before = {model: key(model) for model in ("cnn", "rnn")}
    original = spec("cnn")
    register(replace(original, min_frames=original.min_frames + 1))
    try:
        assert key("cnn") != before["cnn"]
        assert key("rnn") == before["rnn"]
    finally:
        register(original)
    assert key("cnn") == before["cnn"]
    assert key("cnn", learning_rate=1e-4) != before["cnn"]  # every training setting is in the key
