"""Cache keys that make "rerun only what failed" exact.

A training cell's key holds its inputs, the data version (feature config + content of every complete track)
and the code version of what the cell runs: the source of the model's own module and of the training
modules, followed through their project-local imports. Editing `models/crnn.py` therefore invalidates the
CRNN cells and nothing else, and adding a track invalidates every cell (every split changes).
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("genreflow", "tasks", "storage", "models", "flows")
# Code every training runs, whichever model it trains; models/ is followed only from the model's own module
# so that the registry (which imports every builder) does not tie one model's cache to another's code.
TRAINING_MODULES = ("tasks.train", "tasks.evaluate", "models.registry")


def _module_file(module: str) -> Path | None:
    """The source file of a project module, found by path so that nothing gets imported."""
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _project_imports(path: Path) -> set[str]:
    """Project modules that a source file imports, by absolute name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
    with_parents = {".".join(name.split(".")[:depth]) for name in names for depth in range(1, name.count(".") + 2)}
    return {name for name in with_parents if name.split(".")[0] in PROJECT_PACKAGES and _module_file(name)}


def module_closure(root: str, skip_packages: tuple[str, ...] = ()) -> set[Path]:
    """Source files of `root` and every project module it imports, transitively."""
    seen: set[str] = set()
    pending = [root]
    while pending:
        module = pending.pop()
        if module in seen or (module != root and module.split(".")[0] in skip_packages):
            continue
        seen.add(module)
        path = _module_file(module)
        if path is not None:
            pending.extend(_project_imports(path))
    return {path for module in seen if (path := _module_file(module)) is not None}


@lru_cache(maxsize=None)
def code_version(model_module: str) -> str:
    """Hash of the source that a cell training `model_module` runs."""
    files = module_closure(model_module)
    for module in TRAINING_MODULES:
        files |= module_closure(module, skip_packages=("models",))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stable_hash(values: dict[str, Any]) -> str:
    """A short hash of JSON-able values, independent of key order."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:24]
