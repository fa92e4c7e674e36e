"""Code versions follow project imports, so a model's cache is tied to its own code and nobody else's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows import cache_keys
from flows.cache_keys import module_closure, stable_hash


@pytest.fixture
def toy_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway `models` + `tasks` pair shaped like the project's, importable from tmp_path."""
    root = tmp_path / "toy"
    for package in ("models", "tasks"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "models" / "layers.py").write_text("WIDTH = 8\n")
    (root / "models" / "cnn.py").write_text("from models.layers import WIDTH\n")
    (root / "models" / "crnn.py").write_text("import numpy\n")
    (root / "models" / "registry.py").write_text("from models import cnn, crnn\n")
    (root / "tasks" / "train.py").write_text("from models.registry import cnn\n")
    (root / "tasks" / "evaluate.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    for name in [name for name in sys.modules if name.split(".")[0] in ("models", "tasks")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(cache_keys, "REPO_ROOT", root)
    cache_keys.code_version.cache_clear()
    yield root
    cache_keys.code_version.cache_clear()


def test_closure_follows_project_imports_only(toy_project: Path) -> None:
    names = {path.name for path in module_closure("models.cnn")}
    assert names == {"cnn.py", "layers.py", "__init__.py"}


def test_training_code_reaches_models_only_through_the_model_itself(toy_project: Path) -> None:
    names = {path.relative_to(toy_project).as_posix() for path in module_closure("tasks.train", skip_packages=("models",))}
    assert "tasks/train.py" in names
    assert not any(name.startswith("models/") for name in names)


def test_editing_one_model_changes_only_its_own_version(toy_project: Path) -> None:
    before = {model: cache_keys.code_version(f"models.{model}") for model in ("cnn", "crnn")}
    (toy_project / "models" / "layers.py").write_text("WIDTH = 16\n")
    cache_keys.code_version.cache_clear()
    after = {model: cache_keys.code_version(f"models.{model}") for model in ("cnn", "crnn")}
    assert after["cnn"] != before["cnn"]
    assert after["crnn"] == before["crnn"]


def test_editing_training_code_changes_every_version(toy_project: Path) -> None:
    before = cache_keys.code_version("models.crnn")
    (toy_project / "tasks" / "evaluate.py").write_text("THRESHOLD = 1\n")
    cache_keys.code_version.cache_clear()
    assert cache_keys.code_version("models.crnn") != before


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
