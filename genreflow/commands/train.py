"""The `train` sub-command(s); being written."""


def register(subparsers) -> None:
    """Adds nothing yet."""
