"""Cache keys that make "rerun only what failed" exact.

A training cell's code version is the import closure of what it runs, found by reading the source (nothing is
imported to hash it): the training entry point and every genreflow module it imports, transitively, plus the
cell's own model module and what that imports, plus the data files those packages ship (the fault-filtered
split lists). No list has to be remembered: a module that training comes to import is in every key at once.
Two rules keep a key from covering more than the cell runs, each named here with its reason:

- `EXCLUDED`: modules training imports that change nothing a cell learns;
- another model's module: training reaches the baseline's and musicnn's modules to save and load their arrays,
  but a model's module is its own cells' code only (editing `models/crnn.py` retrains the CRNN cells alone).

The model's registry entry is in the key by value (flows/cells.py), not the registry's source. An evaluation's
key holds its model directory (named by its training key), its data version and the same closure of the
evaluation entry point, so editing the evaluation re-evaluates without retraining, and editing the report,
the command line, extraction or the store's maintenance (none imported by either) changes neither.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

ROOT_PACKAGES = ("genreflow", "genreflow.tasks", "genreflow.models", "genreflow.storage", "genreflow.flows")
TRAINING_ENTRY = "genreflow.tasks.training.train"
EVALUATION_ENTRY = "genreflow.tasks.evaluation.evaluate"
# Modules the entry points import that change nothing a cell learns or an evaluation computes, with the reason.
EXCLUDED: dict[str, str] = {
    "genreflow.models.registry": "the table of every model: a cell's key holds its own model's entry by value",
}


@lru_cache(maxsize=1)
def installed_folders() -> dict[str, Path]:
    """Where each of genreflow's packages keeps its source (the repository maps them to top-level folders)."""
    folders = {}
    for name in ROOT_PACKAGES:
        spec = importlib.util.find_spec(name)
        folders[name] = Path(spec.submodule_search_locations[0])
    return folders


def module_file(module: str, folders: dict[str, Path]) -> Path | None:
    """The source file of a project module, found by path under its package's folder; None if there is none."""
    package = max((name for name in folders if module == name or module.startswith(name + ".")), key=len, default=None)
    if package is None:
        return None
    base = (
        folders[package].joinpath(*module[len(package) :].strip(".").split("."))
        if module != package
        else folders[package]
    )
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> frozenset[str]:
    """Every module a source file imports by absolute name, anywhere in it (deferred imports too), with the
    parent packages that importing runs."""
    return _imports_in(path.read_text(), str(path))


@lru_cache(maxsize=1024)
def _imports_in(source: str, filename: str) -> frozenset[str]:
    """`imported_modules` of a source text, parsed once per text: a test edits one file and hashes the rest."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(".".join(name.split(".")[:depth]) for name in names for depth in range(1, name.count(".") + 2))


def module_closure(root: str, follow: Callable[[str], bool], folders: dict[str, Path]) -> dict[str, Path]:
    """`root` and every module it imports, transitively, among those `follow` accepts: name -> source file."""
    found: dict[str, Path] = {}
    pending = [root]
    while pending:
        module = pending.pop()
        path = module_file(module, folders)
        if module in found or path is None:
            continue
        found[module] = path
        pending.extend(name for name in imported_modules(path) if follow(name))
    return found


def is_project_module(module: str) -> bool:
    return module == "genreflow" or module.startswith("genreflow.")


def model_modules() -> frozenset[str]:
    """The modules that define a registered model: each is its own cells' code."""
    from genreflow.models.registry import MODELS  # the table only: cheap, no TensorFlow

    return frozenset(model.module for model in MODELS.values())


def own_code(module: str) -> bool:
    """Followed from a model's module: genreflow's modules, less the exclusions."""
    return is_project_module(module) and module not in EXCLUDED


def shared_code() -> Callable[[str], bool]:
    """Followed from an entry point: genreflow's modules, less the exclusions and the models' own modules (read
    from the registry once, as it is now)."""
    models = model_modules()
    return lambda module: own_code(module) and module not in models


def code_files(model_module: str, folders: dict[str, Path] | None = None) -> dict[str, Path]:
    """The modules whose source a cell training `model_module` runs, and the data files their packages ship."""
    folders = folders or installed_folders()
    modules = {
        **module_closure(TRAINING_ENTRY, shared_code(), folders),
        **module_closure(model_module, own_code, folders),
    }
    return {**modules, **package_data(modules)}


def evaluation_files(folders: dict[str, Path] | None = None) -> dict[str, Path]:
    """The modules whose source an evaluation runs (its model is in its model directory), with their data."""
    modules = module_closure(EVALUATION_ENTRY, shared_code(), folders or installed_folders())
    return {**modules, **package_data(modules)}


def package_data(modules: dict[str, Path]) -> dict[str, Path]:
    """The files other than source that the packages among `modules` ship in folders of their own (the
    fault-filtered split lists): code reads them, so they are part of what it does."""
    data: dict[str, Path] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        for folder in (entry for entry in path.parent.iterdir() if entry.is_dir() and _is_data_folder(entry)):
            for item in sorted(folder.rglob("*")):
                if item.is_file():
                    data[f"{name}/{item.relative_to(path.parent).as_posix()}"] = item
    return data


def _is_data_folder(folder: Path) -> bool:
    return not (folder / "__init__.py").exists() and folder.name != "__pycache__"


def sources_hash(modules: dict[str, Path]) -> str:
    """A hash of the modules' names and source text."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"{name}\n".encode())
        digest.update(modules[name].read_bytes())
    return digest.hexdigest()[:16]


@cache
def code_version(model_module: str) -> str:
    """Hash of the source that a cell training `model_module` runs."""
    return sources_hash(code_files(model_module))


@lru_cache(maxsize=1)
def evaluation_version() -> str:
    """Hash of the source an evaluation runs."""
    return sources_hash(evaluation_files())


def stable_hash(values: dict[str, Any]) -> str:
    """A short hash of JSON-able values, independent of key order."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:24]
