"""Reading a source audio file's bytes, or a clear reason why it cannot be read.

It lives with the collection because scanning reads every file to key it by content, before any feature is
made; extraction and prediction read through it too, so all three report an unreadable file the same way.

`SourceError`: the file cannot be read at all (missing, permission denied, a directory). Nothing is known of
its content, so extraction quarantines nothing (unlike `genreflow.tasks.features.audio.AudioError`); the
track fails for this run.
"""

from __future__ import annotations


class FileProblem(Exception):
    """An error about one file, its `reason` in plain words; the message is `<path>: <reason>`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle by the constructor's arguments, so the error survives a trip between processes."""
        return type(self), (self.path, self.reason)


class SourceError(FileProblem, OSError):
    """An audio file that cannot be read at all."""


def read_source(path: str) -> bytes:
    """The file's bytes, read once: extraction hashes the same bytes it decodes."""
    try:
        with open(path, "rb") as source:
            data = source.read()
    except FileNotFoundError:
        raise SourceError(path, "missing: the file no longer exists") from None
    except PermissionError:
        raise SourceError(path, "unreadable: permission denied") from None
    except IsADirectoryError:
        raise SourceError(path, "not a file: it is a directory") from None
    except OSError as error:
        raise SourceError(path, f"unreadable: {error.strerror or error}") from None
    return data
