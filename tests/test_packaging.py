"""What an install of genreflow puts on a user's import path: `genreflow` and nothing else (no `tasks`, `models`,
`flows` or `storage` to shadow theirs), with every module and data file of the repository's folders inside it."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

# Each folder of the repository, and where it lands in an install.
PACKAGE_FOLDERS = {folder: "genreflow" if folder == "genreflow" else f"genreflow/{folder}"
                   for folder in ("genreflow", "deployments", "flows", "models", "storage", "tasks")}  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install .` (this project only, offline) into an empty folder."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
               "--target", str(target), str(REPO_ROOT)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "TMPDIR": str(build)}, timeout=300)
    return target


def test_an_install_adds_only_genreflow_to_the_import_namespace(installed: Path) -> None:
    [distribution] = metadata.distributions(path=[str(installed)])
    tops = {str(path).split("/")[0] for path in distribution.files}
    importable = {top for top in tops if not top.endswith(".dist-info") and top != ".."}  # ../bin: the command
    assert importable == {"genreflow"}
    assert distribution.read_text("top_level.txt").split() == ["genreflow"]


def test_every_module_and_data_file_of_the_folders_is_installed_under_genreflow(installed: Path) -> None:
    sources = {
        f"{PACKAGE_FOLDERS[path.relative_to(REPO_ROOT).parts[0]]}/{Path(*path.relative_to(REPO_ROOT).parts[1:])}"
        for folder in PACKAGE_FOLDERS
        for path in (REPO_ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".txt") and "__pycache__" not in path.parts
    }
    installed_files = {
        path.relative_to(installed).as_posix() for path in (installed / "genreflow").rglob("*") if path.is_file()
    }
    assert sources <= installed_files


def test_the_installed_package_imports_by_its_own_names_only(installed: Path, tmp_path: Path) -> None:
    script = (
        "import importlib.util, genreflow.tasks.training.splits as splits\n"
        "print(splits.__file__)\n"
        "print([importlib.util.find_spec(name) for name in ('tasks', 'models', 'flows', 'storage', 'deployments')])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0] == str(installed / "genreflow" / "tasks" / "training" / "splits.py")
    assert lines[1] == "[None, None, None, None, None]"
