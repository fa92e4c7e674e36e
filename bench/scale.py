"""Scale benchmark: how each stage of the flow grows with the number of tracks.

The largest synthetic collection (`--sizes`' largest, `--seconds` per track) is written once, outside the timing;
each size is a subset of it (the first tracks of every genre, linked) with a fresh store, cache and run folder.
Per size:
  - the whole flow in a child process (`genreflow_flow`: CNN, 1 s clips, 1 epoch, 1 crop per track, seed 0,
    stratified split), its stages timed by their Prefect task runs (scan + hash, plan, extract batches,
    collection record, training data and data version, train, evaluate, report) and the flow's own time
    around them; the child's resident memory sampled every 50 ms gives each stage's peak; the child counts
    its HTTP requests to the Prefect API (per stage and in all), and the API's task runs and artifacts of the run;
  - the split alone (`make_folds`, stratified and kfold:5) on the size's tracks, in this process;
  - `genreflow store info | verify | compact --dry-run` and `genreflow predict --out` (a CSV row per file, files
    read on a local Dask cluster) over the collection's folder, each a process of its own (seconds, and the
    peak resident memory wait4 reports for it).
Exponent: the slope of log seconds against log tracks over the sizes; `max_exponent` is the largest over every
stage.

Last line JSON: {"sizes": [...], "stages": {"<stage>": {"seconds": [...], "peak_rss_mb": [...], "exponent": x}},
"api_calls": [...], "task_runs": [...], "artifacts": [...], "max_exponent": x, "worst_stage": "<stage>"}.

    python bench/scale.py                                   # 1,000, 3,000 and 10,000 tracks of 10 s
    python bench/scale.py --sizes 200 600 2000 --seconds 5  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

VENV_BIN = Path(sys.executable).parent
FLOW_TASK_STAGES = {  # task run name prefix -> stage
    "scan-collection": "scan_and_hash",
    "plan-extraction": "plan_extraction",
    "extract-batch": "extract",
    "record-collection": "record_collection",
    "training-data": "training_data",
    "train-": "train",
    "evaluate-": "evaluate",
    "report": "report",
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10000], help="tracks per size")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per synthetic track (default 10)")
    parser.add_argument("--work", default="/tmp/genreflow-scale", help="where collections and stores go")
    parser.add_argument(
        "--s3", nargs="*", type=int, metavar="TRACKS",
        help="instead: store and cache on a local S3 (moto) at these sizes (default 1000 3000), counting its "
        "requests by kind per stage (needs the test extra)",
    )  # fmt: skip
    parser.add_argument("--flow-child", nargs=3, metavar=("COLLECTION", "FOLDER", "BASE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def subset(audio: Path, size: int, destination: Path) -> Path:
    """The first tracks of every genre of `audio`, `size` in all, linked under `destination`."""
    shutil.rmtree(destination, ignore_errors=True)
    genres = sorted(path for path in audio.iterdir() if path.is_dir() and not path.name.startswith("."))
    for index, genre in enumerate(genres):
        (destination / genre.name).mkdir(parents=True)
        share = size // len(genres) + (index < size % len(genres))
        for track in sorted(genre.iterdir())[:share]:
            (destination / genre.name / track.name).symlink_to(track)
    return destination


class RssSampler:
    """This process's resident memory every `interval` seconds, with the time of each sample."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.samples: list[tuple[float, float]] = []
        self._process, self._interval, self._stop = psutil.Process(), interval, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss / 2**20))
            time.sleep(self._interval)

    def peak(self, start: float, end: float) -> float:
        """The largest sample within [start, end], or the one nearest it where the span is shorter than a sample."""
        inside = [rss for moment, rss in self.samples if start <= moment <= end]
        nearest = min(self.samples, key=lambda sample: abs(sample[0] - start))[1]
        return round(max(inside, default=nearest), 1)

    def stop(self) -> None:
        self._stop.set()


def count_api_requests() -> list[tuple[float, str]]:
    """Every HTTP request this process makes through httpx from now on: (time, method and path)."""
    import httpx

    requests: list[tuple[float, str]] = []
    for client_class in (httpx.Client, httpx.AsyncClient):
        original = client_class.send

        def send(self: Any, request: httpx.Request, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            requests.append((time.time(), f"{request.method} {request.url.path}"))
            return _original(self, request, *args, **kwargs)

        client_class.send = send
    return requests


def flow_child(collection: str, folder: str, base: str) -> None:
    """Run the flow once on `collection`, its store and cache under `base` (a folder or URL) and its run folder
    in `folder`; print its stages' seconds, spans, peaks and API requests."""
    from genreflow.flows.pipeline import genreflow_flow

    requests, sampler = count_api_requests(), RssSampler()
    started = time.time()
    state = genreflow_flow(
        data=collection, models=["cnn"], clip_seconds=[1.0], seeds=[0], epochs=1, crops_per_track=1,
        store=f"{base}/store.zarr", cache=f"{base}/cache", out=f"{folder}/runs", return_state=True,
    )  # fmt: skip
    ended = time.time()
    summary = state.result()
    runs, artifacts = task_runs_and_artifacts(state.state_details.flow_run_id)
    intervals: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in runs:
        stage = next((stage for prefix, stage in FLOW_TASK_STAGES.items() if name.startswith(prefix)), None)
        if stage:
            intervals.setdefault(stage, []).append((start, end))
    stages = {}
    for stage, spans in intervals.items():
        start, end = min(span[0] for span in spans), max(span[1] for span in spans)
        calls = sum(1 for moment, _ in requests if start <= moment <= end)
        stages[stage] = {"seconds": round(end - start, 3), "peak_rss_mb": sampler.peak(start, end), "api_calls": calls,
                         "span": [start, end]}  # fmt: skip
    in_tasks = sum(stage["seconds"] for stage in stages.values())
    stages["flow_outside_tasks"] = {
        "seconds": round(ended - started - in_tasks, 3), "peak_rss_mb": sampler.peak(started, ended),
        "api_calls": len(requests),
    }  # fmt: skip
    sampler.stop()
    by_kind = Counter(call for _, call in requests)
    model_dir = summary["cells"][0]["result_path"].rsplit("/", 1)[0]  # a URL where the cache is one
    print(json.dumps({"stages": stages, "api_calls": len(requests), "api_by_kind": by_kind.most_common(12),
                      "task_runs": len(runs), "artifacts": artifacts, "model_dir": model_dir}))  # fmt: skip


def task_runs_and_artifacts(flow_run_id: Any) -> tuple[list[tuple[str, float, float]], int]:
    """(name, start, end) of every finished task run of the flow run, and how many artifacts it made."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    timed = [(run.name, run.start_time.timestamp(), run.end_time.timestamp()) for run in runs if run.end_time]
    return timed, len(artifacts)


def timed_process(command: list[str], log: Path) -> dict[str, float]:
    """Run `command` to its end: seconds, and the peak resident memory of the process (wait4)."""
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:  # nothing here is damaged or unreadable: any error is the benchmark's to see
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return {"seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def split_seconds(size: int) -> dict[str, float]:
    """`make_folds` on `size` tracks of 10 genres, stratified and kfold:5 (in this process)."""
    from genreflow.tasks.training.splits import make_folds

    genres = {f"g{index % 10}/{index:06d}": f"g{index % 10}" for index in range(size)}
    started = time.perf_counter()
    for split in ("stratified", "kfold:5"):
        make_folds(genres, split, 0)
    return {"seconds": round(time.perf_counter() - started, 4), "peak_rss_mb": 0.0}


def measure_size(audio: Path, size: int, work: Path, s3_log: Path | None = None) -> dict[str, Any]:
    """Every stage at `size` tracks; with `s3_log` (moto's request log), store and cache in its bucket and the
    S3 requests of each stage counted."""
    folder = work / f"{'s3-' if s3_log else ''}size-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = f"s3://{S3_BUCKET}/size-{size}" if s3_log else str(folder)
    collection = subset(audio, size, folder / "music")
    offset = s3_log.stat().st_size if s3_log else 0
    child = subprocess.run(
        [sys.executable, __file__, "--flow-child", str(collection), str(folder), base],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"the flow at {size} tracks failed:\n{child.stderr[-4000:]}")
    flow = json.loads(child.stdout.strip().splitlines()[-1])
    stages = dict(flow["stages"])
    if s3_log:
        attribute_s3_requests(stages, s3_requests(s3_log, offset))
    stages["split"] = split_seconds(size)
    store = f"{base}/store.zarr"
    genreflow = str(VENV_BIN / "genreflow")
    commands = {
        "store_info": [genreflow, "store", "info", store],
        "store_verify": [genreflow, "store", "verify", store],
        "store_compact_dry_run": [genreflow, "store", "compact", store, "--dry-run"],
        "predict": [
            genreflow,
            "predict",
            "--model-dir",
            flow["model_dir"],
            str(collection),
            "--out",
            str(folder / "predictions.csv"),
        ],  # fmt: skip
    }
    for name, command in commands.items():
        offset = s3_log.stat().st_size if s3_log else 0
        stages[name] = timed_process(command, folder / f"{name}.log")
        if s3_log:
            stages[name]["s3_requests"] = dict(Counter(kind for _, kind in s3_requests(s3_log, offset)))
    print(f"{size} tracks: " + ", ".join(f"{name} {stage['seconds']:.2f} s" for name, stage in stages.items()),
          flush=True)  # fmt: skip
    return {"stages": stages, **{key: flow[key] for key in ("api_calls", "api_by_kind", "task_runs", "artifacts")}}


S3_BUCKET = "genreflow-scale"
MOTO_LINE = re.compile(r'\[(\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d)\] "(GET|PUT|HEAD|DELETE|POST) (\S+)')


def s3_requests(log: Path, offset: int) -> list[tuple[float, str]]:
    """The requests moto logged after byte `offset` of its log: (second they came in, LIST/GET/PUT/HEAD/...)."""
    with log.open("rb") as stream:
        stream.seek(offset)
        lines = stream.read().decode(errors="replace").splitlines()
    found = []
    for line in lines:
        match = MOTO_LINE.search(line)
        if match:
            moment = datetime.strptime(match.group(1), "%d/%b/%Y %H:%M:%S").timestamp()
            method, target = match.group(2), match.group(3)
            listing = method == "GET" and ("list-type=" in target or "delimiter=" in target or "prefix=" in target)
            found.append((moment, "LIST" if listing else method))
    return found


def attribute_s3_requests(stages: dict[str, Any], requests: list[tuple[float, str]]) -> None:
    """Each flow stage's S3 requests by kind, by the second they came in (moto logs whole seconds, so a request
    in a second two stages share counts for both); the flow's total under `flow_outside_tasks`."""
    for stage in stages.values():
        if "span" in stage:
            start, end = int(stage["span"][0]), int(stage["span"][1]) + 1
            stage["s3_requests"] = dict(Counter(kind for moment, kind in requests if start <= moment <= end))
    stages["flow_outside_tasks"]["s3_requests"] = dict(Counter(kind for _, kind in requests))


@contextmanager
def moto_server(log: Path) -> Iterator[None]:
    """moto's S3 on a free local port, this process's environment (and so its children's) pointing at it, and
    an empty bucket."""
    import socket

    import s3fs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    with log.open("wb") as output:
        server = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        os.environ.update(env)
        for _ in range(100):
            try:
                s3fs.S3FileSystem().mkdir(S3_BUCKET)
                break
            except OSError:
                time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait()


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope of log seconds against log tracks."""
    return round(float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-4)), 1)[0]), 3)


def main() -> None:
    args = parse_arguments()
    if args.flow_child:
        flow_child(*args.flow_child)
        return
    if args.s3 is not None:
        s3_ladder(args)
        return
    from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection

    work, sizes = Path(args.work), sorted(args.sizes)
    started = time.perf_counter()
    folder = work / f"audio-{sizes[-1]}x{args.seconds:g}s"
    audio = write_synthetic_collection(folder, -(-sizes[-1] // len(GENRES)), seed=0, seconds=args.seconds)
    print(f"{sizes[-1]} tracks of {args.seconds:g} s written in {time.perf_counter() - started:.0f} s", flush=True)
    measured = [measure_size(audio, size, work) for size in sizes]
    names = list(measured[-1]["stages"])
    stages = {}
    for name in names:
        seconds = [size_result["stages"][name]["seconds"] for size_result in measured]
        peaks = [size_result["stages"][name]["peak_rss_mb"] for size_result in measured]
        stages[name] = {"seconds": seconds, "peak_rss_mb": peaks, "exponent": exponent(sizes, seconds)}
    worst = max(stages, key=lambda name: stages[name]["exponent"])
    result = {
        "sizes": sizes,
        "seconds_per_track": args.seconds,
        "stages": stages,
        "api_calls": [size_result["api_calls"] for size_result in measured],
        "api_by_kind": measured[-1]["api_by_kind"],
        "task_runs": [size_result["task_runs"] for size_result in measured],
        "artifacts": [size_result["artifacts"] for size_result in measured],
        "max_exponent": stages[worst]["exponent"],
        "worst_stage": worst,
    }
    print(json.dumps(result))


def s3_ladder(args: argparse.Namespace) -> None:
    """The ladder with store and cache on moto's S3: requests by kind per stage and per track, at each size."""
    from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection

    work, sizes = Path(args.work), sorted(args.s3 or [1000, 3000])
    largest = max(sizes[-1], *args.sizes)  # the local ladder's collection, written once for both
    folder = work / f"audio-{largest}x{args.seconds:g}s"
    audio = write_synthetic_collection(folder, -(-largest // len(GENRES)), seed=0, seconds=args.seconds)
    log = work / "moto.log"
    with moto_server(log):
        measured = {size: measure_size(audio, size, work, log)["stages"] for size in sizes}
    requests = {
        name: {str(size): measured[size][name].get("s3_requests", {}) for size in sizes} for name in measured[sizes[-1]]
    }
    per_track = {
        name: {
            str(size): {kind: round(count / size, 3) for kind, count in by_size[str(size)].items()} for size in sizes
        }
        for name, by_size in requests.items()
    }
    print(json.dumps({"sizes": sizes, "s3_requests": requests, "per_track": per_track}))


if __name__ == "__main__":
    main()
