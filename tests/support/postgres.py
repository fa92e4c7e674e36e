"""A throwaway PostgreSQL cluster (Debian's `postgresql` package) for a Prefect server to keep its database in."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tests.support.processes import background_process, free_port

# Debian installs the server binaries outside PATH, one folder per major version.
DEBIAN_POSTGRES_BINARIES = Path("/usr/lib/postgresql")
# PostgreSQL refuses to run as root; as root, run it as the account the Debian package creates.
POSTGRES_ACCOUNT = "postgres"


def postgres_binaries() -> Path | None:
    """The newest installed server's bin folder; None where Debian's postgresql is absent or cannot run here."""
    found = sorted(DEBIAN_POSTGRES_BINARIES.glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name))
    if not found or (os.geteuid() == 0 and not has_account(POSTGRES_ACCOUNT)):
        return None
    return found[-1].parent


def has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def as_database_owner(command: list[str]) -> list[str]:
    """The command as it must be started: unchanged, or through runuser when this process is root."""
    if os.geteuid() != 0:
        return command
    return [shutil.which("runuser") or "runuser", "-u", POSTGRES_ACCOUNT, "--", *command]


@contextmanager
def data_folder() -> Iterator[Path]:
    """An empty cluster folder that the server's account can reach (pytest's tmp folders are private to
    this user), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="genreflow-pgdata-"))
    try:
        if os.geteuid() == 0:
            account = pwd.getpwnam(POSTGRES_ACCOUNT)
            os.chown(folder, account.pw_uid, account.pw_gid)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def accepts_connections(binaries: Path, port: int) -> bool:
    return (
        subprocess.run(
            [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode
        == 0
    )


@dataclass(frozen=True)
class PostgresDatabase:
    """One database on a running test cluster."""

    binaries: Path
    port: int
    name: str
    user: str = "genreflow"

    @property
    def url(self) -> str:
        """The value for PREFECT_API_DATABASE_CONNECTION_URL."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.name}"

    def query(self, sql: str) -> list[str]:
        """Values of a one-column query, read with psql: what is really in the database."""
        command = [
            str(self.binaries / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            self.name,
            "-tAc",
            sql,
        ]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()


@contextmanager
def running_postgres(log_dir: Path, binaries: Path, name: str = "prefect") -> Iterator[PostgresDatabase]:
    """Start a cluster on a free loopback port with trust authentication, and create one database on it."""
    database = PostgresDatabase(binaries, free_port(), name)
    with data_folder() as data:
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", database.user, "--auth=trust"]
        subprocess.run(as_database_owner(initdb), check=True, capture_output=True)
        server = [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(database.port),
            "-k",
            str(data),
        ]
        ready = partial(accepts_connections, binaries, database.port)
        with background_process(as_database_owner(server), log_dir / "postgres.log", ready):
            createdb = [
                str(binaries / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(database.port),
                "-U",
                database.user,
                name,
            ]
            subprocess.run(createdb, check=True, capture_output=True)
            yield database
