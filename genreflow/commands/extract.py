"""The `extract` sub-command(s); being written."""


def register(subparsers) -> None:
    """Adds nothing yet."""
