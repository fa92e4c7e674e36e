"""The pretrained reference in the grid: its feature set extracted only because a model needs it, its cells
trained beside the others, a clip shorter than its 3 s patch skipped with the reason (real Prefect, Dask,
Zarr, TensorFlow and musicnn's weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genreflow.core import FEATURE_SETS, LOG_MEL, MUSICNN
from genreflow.storage.store import Store
from tests.support.music import tiny_collection

pytest.importorskip("musicnn", reason="musicnn's weights are installed by make venv")


def test_musicnn_cells_train_on_their_own_features_and_a_1s_clip_is_skipped(prefect_api: str, tmp_path: Path) -> None:
    from genreflow.flows.pipeline import genreflow_flow
    from genreflow.tasks.evaluation.predict import predict_paths

    music = tiny_collection(tmp_path / "music")
    paths = {"store": str(tmp_path / "store.zarr"), "out": str(tmp_path / "runs"), "cache": str(tmp_path / "cache")}
    summary = genreflow_flow(
        data=str(music), models=["baseline", "musicnn"], clip_seconds=[1.0, 3.0], seeds=[0], epochs=1, **paths
    )

    status = {(cell["model"], cell["clip_seconds"]): cell for cell in summary["cells"]}
    assert status["musicnn", 1.0]["status"] == "skipped"
    assert "musicnn needs at least 1 (2.99 s)" in status["musicnn", 1.0]["error"]
    assert {status[key]["status"] for key in status if key != ("musicnn", 1.0)} == {"trained"}
    assert summary["state"] == "Completed"
    run = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert set(run["feature_sets"]) == {LOG_MEL, MUSICNN}
    store = Store.open(paths["store"])
    embeddings = store.feature_set(FEATURE_SETS[MUSICNN])
    track = embeddings.tracks()[0]
    assert embeddings.read(track.key).shape == (1, 200)  # one 3 s patch, 200 values
    model_dir = Path(status["musicnn", 3.0]["result_path"]).parent
    assert (model_dir / "fold-0" / "musicnn-head.npz").is_file()
    prediction = predict_paths(model_dir, [next(music.glob("*/*.wav"))])
    assert prediction["predictions"][0]["genre"] in {path.name for path in music.iterdir() if path.is_dir()}
