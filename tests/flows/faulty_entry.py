"""The real flow with one extra model that fails while a fault file exists: how the tests inject a failure.

The registry is the extension point a user would use to add a model; here the added model delegates to the
CNN once the fault is cleared. Used in-process and as a `prefect flow-run retry --entrypoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genreflow.flows.pipeline import genreflow_flow
from genreflow.models.registry import register, spec
from genreflow.models.spec import ModelSpec

FAULT_ENV = "GENREFLOW_TEST_FAULT_FILE"


def faulty(*args: Any, **kwargs: Any) -> Any:
    """The CNN, unless the fault file named by $GENREFLOW_TEST_FAULT_FILE exists."""
    fault = os.environ.get(FAULT_ENV)
    if fault and Path(fault).exists():
        raise RuntimeError(f"injected fault ({fault} exists)")
    return spec("cnn").build(*args, **kwargs)


register(ModelSpec("faulty", "tests.flows.faulty_entry:faulty", "faulty CNN", min_frames=spec("cnn").min_frames))

__all__ = ["genreflow_flow"]
