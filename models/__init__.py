"""Model builders, their registry (`genreflow.models.registry`), the trained model's directory format, and how
TensorFlow is started.

Every path to TensorFlow in genreflow goes through `import_tensorflow`, so its process-wide settings are made
before it starts: the BFC allocator for CPU tensors (TensorFlow's default hands every large activation back to
the kernel on free, and each training step page-faults it afresh: a CNN step took 1.7 s instead of 1.0 s,
docs/design.md), log level 2, and its C++ start-up notices (oneDNN's, printed before the log level is read)
kept out of the user's terminal. Values the user has set are kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

TENSORFLOW_ENVIRONMENT = {"TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}


def import_tensorflow() -> ModuleType:
    """TensorFlow, started with genreflow's settings (see above)."""
    if "tensorflow" not in sys.modules:
        for name, value in TENSORFLOW_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        try:
            with _stderr_silenced():
                import tensorflow  # noqa: F401  (imported for its side effect: started quietly)
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                "TensorFlow is not installed: install genreflow with its 'cpu' or 'gpu' extra, e.g. "
                "pip install 'genreflow[cpu]' (make venv does)"
            ) from error
    return sys.modules["tensorflow"]


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block: what native code prints there is dropped. An
    exception still propagates, and Python's own traceback goes to the real stderr afterwards."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
