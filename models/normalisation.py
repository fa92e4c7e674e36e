"""Per-band standardisation, kept with each trained model: the mean and standard deviation of every mel band
over the training tracks' frames. It decides whether the networks learn at all on real music (docs/design.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreflow.files import write_json


@dataclass(frozen=True)
class BandNormaliser:
    """Standardises each mel band with the training split's statistics."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, frames: np.ndarray) -> np.ndarray:
        return ((frames - self.mean) / self.std).astype(np.float32, copy=False)

    def save(self, path: Path) -> None:
        write_json(path, {"mean": self.mean.tolist(), "std": self.std.tolist()})

    @classmethod
    def load(cls, path: Path) -> BandNormaliser:
        values = json.loads(path.read_text())
        return cls(np.asarray(values["mean"], dtype=np.float32), np.asarray(values["std"], dtype=np.float32))
