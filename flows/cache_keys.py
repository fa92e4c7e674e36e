"""Cache keys that make "rerun only what failed" exact.

A training cell's key holds its inputs, its data's version and the code version of exactly what changes what
the cell learns: the model's own module and the model modules it imports (its blocks), and the training code
with the data pipeline it streams through (genreflow.tasks.training, the store's reading code, the model
directory's format, the core). The command line, the report, extraction and the store's maintenance are not
in it: editing them keeps every trained cell. Editing `models/crnn.py` invalidates the CRNN cells and nothing
else. An evaluation's key holds its model directory, data version and the evaluation code's version, so
editing the evaluation re-evaluates without retraining.

Sources are found by path from the packages' folders, so nothing is imported to hash it.
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
MODELS = "genreflow.models"
# What every cell runs, whichever model it trains: the training code and everything it imports from here.
TRAINING_ENTRY = "genreflow.tasks.training.train"
TRAINING_CODE = (
    "genreflow.core",
    "genreflow.tasks.training",
    "genreflow.storage.schema",
    "genreflow.storage.store",
    "genreflow.storage.float16",
    "genreflow.models.directory",
    "genreflow.models.normalisation",
)
EVALUATION_ENTRY = "genreflow.tasks.evaluation.evaluate"
EVALUATION_CODE = (*TRAINING_CODE, "genreflow.tasks.evaluation")


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


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports by absolute name, with the parent packages that importing runs."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {".".join(name.split(".")[:depth]) for name in names for depth in range(1, name.count(".") + 2)}


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


def within(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    """Accepts the modules `prefixes` names and the modules inside them."""
    return lambda module: any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _model_code(module: str) -> bool:
    """A model's own code: the modules of genreflow.models it imports, but not the registry, which names
    every model (and would tie each model's cells to every other's)."""
    return within((MODELS,))(module) and module != "genreflow.models.registry"


def code_files(model_module: str, folders: dict[str, Path] | None = None) -> dict[str, Path]:
    """The modules whose source a cell training `model_module` depends on."""
    folders = folders or installed_folders()
    return {
        **module_closure(model_module, _model_code, folders),
        **module_closure(TRAINING_ENTRY, within(TRAINING_CODE), folders),
    }


def evaluation_files(folders: dict[str, Path] | None = None) -> dict[str, Path]:
    """The modules whose source an evaluation depends on (its model is in its model directory)."""
    return module_closure(EVALUATION_ENTRY, within(EVALUATION_CODE), folders or installed_folders())


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
