"""Extraction benchmark: librosa as a user would write it, against genreflow's extraction, on the same files.

Stages, each over every track:
  1. librosa baseline: per file `librosa.load` + `melspectrogram` + `power_to_db`, sequentially, in process,
     BLAS limited to one thread and the process pinned to one CPU (as stage 2 is); 1b. the same with BLAS as
     installed and no pinning (its mel product then runs on every core);
  2. genreflow on one worker: `extract_tracks` (decode, checks, hash, log-mel, Zarr write) on the same
     groups of tracks that stage 3 sends to Dask as tasks, one after the other, pinned to one CPU.
     Stages 1 and 2 alternate group by group, so that drifts in the machine's speed hit both alike;
     this process and the process pool run with the Dask workers' malloc settings (MALLOC_TOP_PAD_);
  3. genreflow on Dask, one worker per core (the fixed worker environment `dask_client` builds);
  4. the same work on a plain `ProcessPoolExecutor`, as a reference for Dask's own overhead;
  5. Dask with its default worker environment (`MALLOC_TRIM_THRESHOLD_=65536`): the trap. Last, because
     Dask's nanny also sets that variable in this process, where later children would inherit it.
Beside them, the machine itself: a loop of pure-Python arithmetic (no memory traffic, no library) timed in one
process and in one process per worker at once, alternately, and compared by dask_efficiency's own rule (fastest
alone against fastest all at once): machine_efficiency, what that rule gives here for work that shares nothing.

Wall times depend on what else the machine runs; CPU seconds per track and minor page faults per track
(stages 1, 1b, 2, 3, 5, in the table) hardly do, and show the trap even on a busy machine.

Beside the stages, the log-mel alone (already decoded audio, one thread, no store) is timed against librosa's
`melspectrogram` + `power_to_db` on the first LOGMEL_TRACKS tracks: logmel_speedup_vs_librosa.
Every stage is warmed up before it is timed (imports, filter banks, Zarr, worker start): a once-per-process
cost. Stages 1-4 and the machine loop run --repeats times (default 3), all of them one after another in each
repeat, with the Dask cluster and the process pool started once and kept: so each repeat's stages meet the
same minute of the machine. Each reports its fastest run; stage 5 runs once.
Prints a table, then last one JSON line: speedup_vs_librosa (2 vs 1), speedup_vs_librosa_all_cores (2 vs
1b), dask_efficiency (3 vs 2, per core), dask_vs_pool_efficiency (3 against 4: target >= 0.95),
audio_seconds_per_second (3), bytes_per_track, peak_rss_mb (largest
worker), client memory growth, machine_efficiency, and dask_efficiency's factors: dask_busy_share (the share of
stage 3 its workers spent on a CPU, not waiting; dask_client_cpu_share, the CPU the client and its scheduler took
meanwhile, is part of why they waited), dask_cpu_per_track_vs_one_worker (the CPU a track took on the
Dask workers against stage 2: above 1 where the workers slow each other) and one_worker_busy_share (stage 2's);
dask_efficiency = dask_busy_share / dask_cpu_per_track_vs_one_worker / one_worker_busy_share.

    python bench/extract.py --data ../shared/data/gtzan-mini
    python bench/extract.py --synthetic 1000
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import psutil
from distributed import Client

from genreflow.core import FeatureConfig
from genreflow.storage.store import FeatureSet
from genreflow.tasks.cluster import WORKER_ENVIRONMENT, dask_client, default_worker_count
from genreflow.tasks.collection.scan import SourceTrack, scan_collection
from genreflow.tasks.collection.synthetic import GENRES, write_synthetic_collection
from genreflow.tasks.features.extract import (
    TrackFailure,
    TrackOutcome,
    extract_batch,
    extract_tracks,
    task_groups,
)
from genreflow.tasks.features.logmel import log_mel

COMPARED_TRACKS = 3  # tracks whose stored features are checked against librosa's
LOGMEL_TRACKS = 20  # decoded tracks on which the two log-mel implementations alone are timed
LOGMEL_REPEATS = 3  # best of: the log-mel alone takes milliseconds, so one pass is noisy
M_TOP_PAD = -2  # glibc's mallopt parameter that MALLOC_TOP_PAD_ sets
CPU_LOOP_STEPS = 4_000_000  # about half a second of pure-Python additions on one core here


@dataclass
class Stage:
    """One way of extracting every track, timed."""

    name: str
    workers: int
    tracks: int
    audio_seconds: float
    wall_seconds: float
    cpu_seconds: float | None = None  # user + system, summed over the workers (where measured)
    page_faults: int | None = None  # minor faults: the malloc trap shows up here, whatever the machine's load
    client_cpu_seconds: float | None = None  # Dask stages: this process's (the client's and its scheduler's)

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", help="a GTZAN-layout folder")
    source.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        default=120,
        help="N synthetic 30 s tracks in total, rounded up to whole genres (default 120)",
    )
    parser.add_argument("--work-dir", default="runs/bench", help="where the synthetic audio and stores go")
    parser.add_argument("--workers", type=int, default=default_worker_count(), help="Dask workers (default: cores)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of stages 1-4; each reports its fastest, the one the machine slowed least (default 3)",
    )
    return parser.parse_args(argv)


def bench_tracks(args: argparse.Namespace) -> list[SourceTrack]:
    if args.data:
        return scan_collection(args.data).tracks
    per_genre = math.ceil(args.synthetic / len(GENRES))
    folder = Path(args.work_dir) / f"synthetic-seed0-n{per_genre}"
    return scan_collection(write_synthetic_collection(folder, tracks_per_genre=per_genre, seed=0)).tracks


def warm_page_cache(tracks: list[SourceTrack]) -> None:
    """Read every file once, so the first stage does not pay for the disk alone."""
    for track in tracks:
        Path(track.path).read_bytes()


# ---- stages ----------------------------------------------------------------------------------------------
def librosa_as_installed(tracks: list[SourceTrack], config: FeatureConfig) -> Stage:
    """Stage 1b: the baseline with BLAS as installed (every core), on its own."""
    librosa_log_mel(tracks[0].path, config)  # warm up: imports, filter bank caches
    meter = Meter()
    with meter:
        audio_seconds = sum(librosa_log_mel(track.path, config)[1] for track in tracks)
    return meter.stage("1b librosa, as installed", 1, len(tracks), audio_seconds)


def one_core_pass(tracks: list[SourceTrack], config: FeatureConfig, store: str, workers: int) -> tuple[Stage, Stage]:
    """Stages 1 and 2 on one CPU, interleaved: librosa on one task group of tracks, then genreflow on the same.

    This machine's speed drifts by tens of percent from minute to minute; interleaved, both sides meet the
    same drift, and their ratio does not.
    """
    from threadpoolctl import threadpool_limits

    librosa_meter, genreflow_meter = Meter(), Meter()
    outcomes: list[TrackOutcome] = []
    audio_seconds = 0.0
    with on_one_core(), threadpool_limits(limits=1):
        for group in task_groups(tracks, workers):  # the groups stage 3 sends to its workers
            with librosa_meter:
                results = [librosa_log_mel(track.path, config) for track in group]
            with genreflow_meter:
                outcomes += extracted([extract_tracks(group, store, config)])
            audio_seconds += sum(seconds for _, seconds in results)
    librosa_stage = librosa_meter.stage("1 librosa, one thread", 1, len(tracks), audio_seconds)
    return librosa_stage, _stage("2 genreflow, one worker", 1, outcomes, genreflow_meter.wall, genreflow_meter.used)


def librosa_log_mel(path: str, config: FeatureConfig) -> tuple[np.ndarray, float]:
    """What a user would write: the log-mel (n_mels, frames) in dB, and the audio's length in seconds."""
    import librosa

    audio, rate = librosa.load(path, sr=config.sample_rate)
    return librosa_features(audio, config), audio.size / rate


def librosa_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    import librosa

    power = librosa.feature.melspectrogram(
        y=audio,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        power=2.0,
    )
    return librosa.power_to_db(power, ref=1.0, top_db=config.top_db)


def logmel_speedup(tracks: list[SourceTrack], config: FeatureConfig) -> float:
    """librosa's log-mel time over genreflow's, on the same decoded audio, one thread each, best of a few."""
    import librosa
    from threadpoolctl import threadpool_limits

    clips = [librosa.load(track.path, sr=config.sample_rate)[0] for track in tracks[:LOGMEL_TRACKS]]
    with threadpool_limits(limits=1):
        theirs = best_time(lambda: [librosa_features(clip, config) for clip in clips])
        ours = best_time(lambda: [log_mel(clip, config) for clip in clips])
    return theirs / ours


def best_time(work: Callable[[], object]) -> float:
    """The shortest of LOGMEL_REPEATS timed runs of `work`, after one untimed run."""
    work()
    return min(_seconds(work) for _ in range(LOGMEL_REPEATS))


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def dask_pass(
    name: str,
    client: Client,
    tracks: list[SourceTrack],
    config: FeatureConfig,
    store: str,
    workers: int,
    client_rss: list[tuple[int, float]],
) -> Stage:
    """One run of stage 3 or 5 on warm workers; samples the client's RSS as tasks finish and at the end."""
    usage_before, client_before, started = client.run(usage), usage(), time.perf_counter()
    outcomes = extract_batch(tracks, store, config, client, on_progress=_rss_sampler(client_rss))
    wall, client_cpu = time.perf_counter() - started, usage()[0] - client_before[0]
    client_rss.append((len(outcomes), _client_rss_mb()))
    stage = _stage(name, workers, outcomes, wall, _difference(client.run(usage).values(), usage_before.values()))
    stage.client_cpu_seconds = client_cpu
    return stage


@contextmanager
def warm_process_pool(
    track: SourceTrack, config: FeatureConfig, scratch_store: str, workers: int
) -> Iterator[ProcessPoolExecutor]:
    """A spawned pool of `workers` processes, each with the Dask workers' malloc settings and one track
    extracted, all started before this returns."""
    context = multiprocessing.get_context("spawn")
    everyone_warm = context.Barrier(workers + 1)
    warm_up_arguments = (track, config, scratch_store, everyone_warm)
    with ProcessPoolExecutor(workers, context, _warm_up_then_wait, warm_up_arguments) as pool:
        for _ in range(workers):
            pool.submit(abs, 0)  # the pool starts one process per task waiting
        everyone_warm.wait()
        yield pool


def pool_pass(
    pool: ProcessPoolExecutor, tracks: list[SourceTrack], config: FeatureConfig, store: str, workers: int
) -> Stage:
    """One run of stage 4: the task groups Dask would get, mapped over the pool."""
    FeatureSet.create_or_open(store, config)
    work = partial(extract_tracks, store_location=store, feature_config=config)
    started = time.perf_counter()
    outcomes = extracted(pool.map(work, task_groups(tracks, workers)))
    return _stage("4 genreflow, process pool", workers, outcomes, time.perf_counter() - started)


def machine_pass(pool: ProcessPoolExecutor, workers: int) -> tuple[float, float]:
    """Seconds of the CPU-only loop in one of the pool's processes alone, then in all of them at once."""
    alone = _seconds(lambda: pool.submit(cpu_only_loop).result())
    return alone, _seconds(lambda: list(pool.map(cpu_only_loop, [CPU_LOOP_STEPS] * workers)))


def cpu_only_loop(steps: int = CPU_LOOP_STEPS) -> int:
    """Pure-Python additions: no memory traffic and no library, so two copies share nothing but the machine."""
    total = 0
    for step in range(steps):
        total += step
    return total


def repeat_store(store: str, repeat: int) -> str:
    """A fresh store for each repeat (a store already holding the tracks would skip them); the first is `store`."""
    return store if repeat == 0 else f"{store}-{repeat}"


def fastest(runs: list[Stage]) -> Stage:
    """The run least slowed by the rest of the machine."""
    return min(runs, key=lambda stage: stage.wall_seconds)


@contextmanager
def dask_default_environment_client(workers: int) -> Iterator[Client]:
    """A LocalCluster exactly as Dask configures it: the malloc trap included."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


# ---- helpers ---------------------------------------------------------------------------------------------
class Meter:
    """Wall time, CPU seconds and minor page faults of this process, summed over every `with meter:` block."""

    def __init__(self) -> None:
        self.wall, self.used = 0.0, (0.0, 0)

    def __enter__(self) -> None:
        self._started, self._before = time.perf_counter(), usage()

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter() - self._started
        cpu, faults = _difference([usage()], [self._before])
        self.used = (self.used[0] + cpu, self.used[1] + faults)

    def stage(self, name: str, workers: int, tracks: int, audio_seconds: float) -> Stage:
        return Stage(name, workers, tracks, audio_seconds, self.wall, *self.used)


def use_worker_malloc_settings() -> None:
    """Give this process (stages 1 and 2) and the process pool's the malloc settings of genreflow's Dask workers.

    Dask workers start with MALLOC_TOP_PAD_ (see WORKER_ENVIRONMENT); without it, glibc hands freed memory
    back and every track page-faults its arrays afresh (measured here in one process: ~960 faults and ~5 ms
    of system time per track, against ~2 and ~1.4 ms). glibc reads that variable only at start-up, so it is
    set here with mallopt, for this process alone: stage 5's workers must meet Dask's own defaults.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(M_TOP_PAD, int(WORKER_ENVIRONMENT["MALLOC_TOP_PAD_"] or 0))


@contextmanager
def on_one_core() -> Iterator[None]:
    """Every thread of this process on one CPU, so that a one-worker stage uses one core, not more.

    Zarr encodes and writes chunks on its own threads, which would otherwise run on the idle second core
    (measured here: stage 2 then used 1.05 CPU seconds per wall second, flattering it and, by the same
    margin, understating Dask's efficiency against it). Affinity is per thread on Linux, so every thread is
    pinned, and threads started meanwhile inherit it; all are given back the whole set afterwards.
    """
    allowed = os.sched_getaffinity(0)
    _pin_threads({min(allowed)})
    try:
        yield
    finally:
        _pin_threads(allowed)


def _pin_threads(cpus: set[int]) -> None:
    for thread_id in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(thread_id), cpus)
        except ProcessLookupError:  # the thread has ended since it was listed
            continue


def extracted(results: Iterable[list[TrackOutcome | TrackFailure]]) -> list[TrackOutcome]:
    """Every track's outcome from per-task results; a benchmark with a failed track is not a benchmark."""
    outcomes = [result for task in results for result in task]
    failures = [result for result in outcomes if isinstance(result, TrackFailure)]
    if failures:
        raise RuntimeError(f"{len(failures)} track(s) failed, e.g. {failures[0]}")
    return [outcome for outcome in outcomes if isinstance(outcome, TrackOutcome)]


def warm_up(track: SourceTrack, config: FeatureConfig, scratch_store: str) -> None:
    """Extract one track into a scratch store before timing: imports, the mel filter bank, Zarr's codecs and
    event loop are a once-per-worker cost."""
    extracted([extract_tracks([track], scratch_store, config)])


def _warm_up_then_wait(
    track: SourceTrack, config: FeatureConfig, scratch_store: str, everyone_warm: threading.Barrier
) -> None:
    use_worker_malloc_settings()
    warm_up(track, config, scratch_store)
    everyone_warm.wait()


def usage() -> tuple[float, int]:
    """CPU seconds (user + system) and minor page faults of this process so far."""
    current = resource.getrusage(resource.RUSAGE_SELF)
    return current.ru_utime + current.ru_stime, current.ru_minflt


def _difference(after: Iterable[tuple[float, int]], before: Iterable[tuple[float, int]]) -> tuple[float, int]:
    """Usage between two snapshots, summed over processes."""
    pairs = list(zip(after, before, strict=True))
    return sum(a[0] - b[0] for a, b in pairs), sum(a[1] - b[1] for a, b in pairs)


def _stage(
    name: str, workers: int, outcomes: list[TrackOutcome], wall: float, used: tuple[float, int] | None = None
) -> Stage:
    cpu, faults = used if used is not None else (None, None)
    return Stage(name, workers, len(outcomes), sum(outcome.audio_seconds for outcome in outcomes), wall, cpu, faults)


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_sampler(samples: list[tuple[int, float]]) -> Callable[[int], None]:
    """A progress callback that records (tracks finished so far, client RSS in MB) as each task finishes."""

    def sample(tracks: int) -> None:
        samples.append(((samples[-1][0] if samples else 0) + tracks, _client_rss_mb()))

    return sample


def _client_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def max_difference_db(store: str, tracks: list[SourceTrack], config: FeatureConfig) -> float:
    """Largest |stored - librosa| in dB over the first COMPARED_TRACKS tracks (the store holds float16)."""
    features = FeatureSet.open(store, config)
    return max(
        float(np.max(np.abs(features.read(track.key) - librosa_log_mel(track.path, config)[0].T)))
        for track in tracks[:COMPARED_TRACKS]
    )


def client_growth_mb_per_1000_tracks(samples: list[tuple[int, float]]) -> float:
    """Client RSS growth from the first sample past a tenth of the tracks to the last (taken once every
    outcome was fetched), scaled to 1,000 tracks."""
    total = samples[-1][0] if samples else 0
    start = next(((tracks, rss) for tracks, rss in samples if tracks >= total / 10), None)
    if start is None or total <= start[0]:
        return 0.0
    return (samples[-1][1] - start[1]) / (total - start[0]) * 1000


def print_table(stages: list[Stage], baseline: Stage) -> None:
    print(
        f"{'stage':28} {'workers':>7} {'tracks':>6} {'audio h':>7} {'wall s':>7} {'audio s/s':>9} "
        f"{'x librosa':>9} {'cpu s/track':>11} {'faults/track':>12}"
    )
    for stage in stages:
        speedup = stage.audio_seconds_per_second / baseline.audio_seconds_per_second
        cpu = "-" if stage.cpu_seconds is None else f"{stage.cpu_seconds / stage.tracks:.3f}"
        faults = "-" if stage.page_faults is None else f"{stage.page_faults / stage.tracks:.0f}"
        print(
            f"{stage.name:28} {stage.workers:7d} {stage.tracks:6d} {stage.audio_seconds / 3600:7.2f} "
            f"{stage.wall_seconds:7.1f} {stage.audio_seconds_per_second:9.0f} {speedup:9.2f} {cpu:>11} {faults:>12}"
        )


@dataclass
class Repeat:
    """One repeat's timings of stages 1-4 and of the machine loop, taken back to back."""

    librosa: Stage
    single: Stage
    dask: Stage
    pool: Stage
    loop_alone: float
    loop_together: float
    client_rss: list[tuple[int, float]]  # (tracks finished, MB), sampled as stage 3's tasks finished


@dataclass
class Results:
    """Every stage, plus what was measured beside the timings."""

    librosa: Stage
    librosa_all_cores: Stage
    single: Stage
    dask: Stage
    pool: Stage
    trap: Stage
    worker_peak_kib: int
    client_rss_mb: list[tuple[int, float]]  # the last repeat's samples: by then nothing is loaded for the first time
    bytes_per_track: float
    max_difference_db: float
    logmel_speedup: float
    machine_efficiency: float

    def efficiency(self, stage: Stage) -> float:
        """Throughput per worker relative to one worker in process (1.0 = perfect scaling)."""
        return round(stage.audio_seconds_per_second / (self.single.audio_seconds_per_second * stage.workers), 3)

    def cpu_per_track_ratio(self, stage: Stage) -> float:
        """CPU seconds per track in `stage` (its workers' whole processes) against stage 2's: above 1, a track
        cost more CPU there (cores shared with the other workers, Dask's own threads)."""
        return round(_cpu_per_track(stage) / _cpu_per_track(self.single), 3)


def busy_share(stage: Stage) -> float:
    """The share of a stage's wall time that its workers spent on a CPU; the rest they waited (for the first
    task, between tasks, for the last task elsewhere). efficiency = busy share (stage) / CPU per track ratio /
    busy share (stage 2), exactly, the stage and stage 2 covering the same tracks."""
    return round(_cpu_seconds(stage) / (stage.wall_seconds * stage.workers), 3)


def client_cpu_share(stage: Stage) -> float:
    """The client's CPU seconds (and its scheduler's, which a LocalCluster runs in the client's process) as a
    share of the workers' wall time: CPU the workers could not have while they ran."""
    return round((stage.client_cpu_seconds or 0.0) / (stage.wall_seconds * stage.workers), 3)


def _cpu_per_track(stage: Stage) -> float:
    return _cpu_seconds(stage) / stage.tracks


def _cpu_seconds(stage: Stage) -> float:
    if stage.cpu_seconds is None:
        raise ValueError(f"stage {stage.name!r} was timed without its CPU seconds")
    return stage.cpu_seconds


def run_stages(tracks: list[SourceTrack], config: FeatureConfig, workers: int, repeats: int, scratch: Path) -> Results:
    stores = {name: str(scratch / f"{name}.zarr") for name in ("single", "dask", "pool", "trap")}
    with on_one_core():
        logmel_ratio = logmel_speedup(tracks, config)
    librosa_all_cores = librosa_as_installed(tracks, config)
    librosa_log_mel(tracks[0].path, config)  # warm up stages 1 and 2: imports, caches, Zarr's first write
    warm_up(tracks[0], config, str(scratch / "warm-up.zarr"))
    pool_warm_up = f"{stores['pool']}.warm-up"
    with dask_client(None, workers) as client, warm_process_pool(tracks[0], config, pool_warm_up, workers) as pool:
        client.run(warm_up, tracks[0], config, f"{stores['dask']}.warm-up")
        runs = [timed_repeat(tracks, config, stores, repeat, workers, client, pool) for repeat in range(repeats)]
        peak_kib = max(client.run(_peak_rss_kib).values())
    trap_stage = trap_pass(tracks, config, stores["trap"], workers)
    stored = FeatureSet.open(stores["dask"], config)
    return Results(
        fastest([run.librosa for run in runs]),
        librosa_all_cores,
        fastest([run.single for run in runs]),
        fastest([run.dask for run in runs]),
        fastest([run.pool for run in runs]),
        trap_stage,
        peak_kib,
        runs[-1].client_rss,
        bytes_per_track=stored.store.bytes_on_disk() / max(1, len(stored.tracks())),
        max_difference_db=max_difference_db(stores["dask"], tracks, config),
        logmel_speedup=logmel_ratio,
        machine_efficiency=round(min(run.loop_alone for run in runs) / min(run.loop_together for run in runs), 3),
    )


def timed_repeat(
    tracks: list[SourceTrack],
    config: FeatureConfig,
    stores: dict[str, str],
    repeat: int,
    workers: int,
    client: Client,
    pool: ProcessPoolExecutor,
) -> Repeat:
    """Stages 1 and 2 (interleaved), 3, 4 and the machine loop, back to back, each into a fresh store."""
    librosa_stage, single = one_core_pass(tracks, config, repeat_store(stores["single"], repeat), workers)
    client_rss: list[tuple[int, float]] = []
    dask_stage = dask_pass(
        "3 genreflow, Dask", client, tracks, config, repeat_store(stores["dask"], repeat), workers, client_rss
    )
    pool_stage = pool_pass(pool, tracks, config, repeat_store(stores["pool"], repeat), workers)
    return Repeat(librosa_stage, single, dask_stage, pool_stage, *machine_pass(pool, workers), client_rss)


def trap_pass(tracks: list[SourceTrack], config: FeatureConfig, store: str, workers: int) -> Stage:
    """Stage 5, once, on a cluster with Dask's default worker environment."""
    with dask_default_environment_client(workers) as client:
        client.run(warm_up, tracks[0], config, f"{store}.warm-up")
        return dask_pass("5 Dask default env (trap)", client, tracks, config, store, workers, [])


def summary(results: Results) -> dict[str, float | int]:
    """The JSON line: the issue's figures first, then what explains them."""
    dask, trap = results.dask, results.trap
    return {
        "tracks": dask.tracks,
        "workers": dask.workers,
        "speedup_vs_librosa": round(
            results.single.audio_seconds_per_second / results.librosa.audio_seconds_per_second, 3
        ),
        "speedup_vs_librosa_all_cores": round(
            results.single.audio_seconds_per_second / results.librosa_all_cores.audio_seconds_per_second, 3
        ),
        "logmel_speedup_vs_librosa": round(results.logmel_speedup, 3),
        "dask_efficiency": results.efficiency(dask),
        "machine_efficiency": results.machine_efficiency,
        "dask_busy_share": busy_share(dask),
        "dask_client_cpu_share": client_cpu_share(dask),
        "dask_cpu_per_track_vs_one_worker": results.cpu_per_track_ratio(dask),
        "one_worker_busy_share": busy_share(results.single),
        "audio_seconds_per_second": round(dask.audio_seconds_per_second, 1),
        "bytes_per_track": round(results.bytes_per_track),
        "peak_rss_mb": round(results.worker_peak_kib / 1024, 1),
        "client_rss_growth_mb_per_1000_tracks": round(client_growth_mb_per_1000_tracks(results.client_rss_mb), 2),
        "process_pool_efficiency": results.efficiency(results.pool),
        # The target: Dask costs no more than the simplest alternative, dask_vs_pool_efficiency >= 0.95.
        "dask_vs_pool_efficiency": round(results.efficiency(dask) / results.efficiency(results.pool), 3),
        "dask_efficiency_default_env": results.efficiency(trap),
        "page_faults_per_track": round(dask.page_faults / dask.tracks),
        "page_faults_per_track_default_env": round(trap.page_faults / trap.tracks),
        "max_abs_db_vs_librosa": round(results.max_difference_db, 4),
    }


def explain_dask_efficiency(results: Results) -> str:
    """dask_efficiency as the product of what waiting costs and what sharing the machine costs."""
    dask = results.dask
    return (
        f"dask_efficiency {results.efficiency(dask):.3f} = the Dask workers' busy share {busy_share(dask):.3f} "
        f"(the rest of stage 3 they waited: first task, hand-overs, the other worker's last task, the client and "
        f"scheduler, whose CPU came to {client_cpu_share(dask):.3f} of the workers' time) / their CPU "
        f"per track against stage 2's {results.cpu_per_track_ratio(dask):.3f} (cores shared with each other, "
        f"Dask's own threads) / stage 2's busy share {busy_share(results.single):.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_worker_malloc_settings()
    config = FeatureConfig()
    tracks = bench_tracks(args)
    warm_page_cache(tracks)
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
        results = run_stages(tracks, config, args.workers, args.repeats, Path(scratch))
    stages = [results.librosa, results.librosa_all_cores, results.single, results.dask, results.pool, results.trap]
    print_table(stages, results.librosa)
    print(
        f"machine: a CPU-only loop in {args.workers} processes at once ran at {results.machine_efficiency:.2f} "
        f"of {args.workers} times its speed alone (fastest of {args.repeats} each, as for dask_efficiency)"
    )
    print(explain_dask_efficiency(results))
    print(json.dumps(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
