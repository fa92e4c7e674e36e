"""Training speed against the machine's own arithmetic: clips/s, FLOPs per clip, and the share of matmul speed.

For each model and clip length: the model as training builds it (the registry's builder, `compile_for_training`:
Adam on cross-entropy, fused batch norm), batches of `--batch` random clips (32 by default) (frames from
`FeatureConfig().frames_for(seconds)` x 128 mel bands), a few untimed warm-up steps (tracing), then `--seconds`
of timed steps. The forward FLOPs per clip are counted from the layers (2 per multiply-add: convolutions, dense
layers, and each recurrent layer's loop over its time steps: LSTM 4 gates, GRU 3, x (input + hidden) x hidden);
a training step is counted as 3 forward passes. The achieved training FLOP/s is divided by a 2048 x 2048
float32 `tf.matmul` run in the same process, in slices alternating with the training's (a quarter of its
time; the mean rate over all slices), so that the ratio holds while other work shares the cores. The bfloat16
matmul is measured too (at the end) where the CPU has AVX512_BF16 or AMX.

`--processes N` trains N copies of each model in N processes at once, one thread each, and reports their summed
clips/s (each process's ratio uses its own one-thread matmul): compare `--threads 2` with `--processes 2` to
choose between one cell with two threads and two cells with one thread each.

Prints a table, then one line of JSON.

    python bench/train_speed.py
    python bench/train_speed.py --models cnn --clips 5 --precision bfloat16
    python bench/train_speed.py --processes 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genreflow.core import PRECISIONS, FeatureConfig
from genreflow.models import import_tensorflow
from genreflow.models.precision import cpu_flags, cpu_model, cpu_supports_bf16, dtype_policy
from genreflow.models.registry import build_model

GENRES = 10
MATMUL_N = 2048
ROUNDS = 4
NETWORKS = ("cnn", "rnn", "crnn")


@dataclass(frozen=True)
class Settings:
    """One bench run's settings, as they travel to a child process."""

    seconds: float
    threads: int
    inter_op: int
    precision: str
    fused_batch_norm: bool
    warmup_steps: int
    xla: bool = False
    batch: int = 32  # clips per training step


@dataclass(frozen=True)
class Measurement:
    """One model at one clip length, in one process (or summed over `processes`)."""

    model: str
    clip_seconds: float
    frames: int
    precision: str
    threads: int
    processes: int
    clips_per_s: float
    forward_gflop_per_clip: float
    train_gflops: float
    matmul_fp32_gflops: float
    of_fp32_matmul: float
    steps: int


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(NETWORKS), help="comma-separated (default cnn,rnn,crnn)")
    parser.add_argument("--clips", default="5,30", help="clip lengths in seconds, comma-separated (default 5,30)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed training per measurement (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    parser.add_argument(
        "--inter-op", type=int, help="inter-op threads (default: --threads, as training sets them: tasks/training)"
    )
    parser.add_argument("--precision", default="float32", choices=PRECISIONS[1:], help="resolved: no auto here")
    parser.add_argument(
        "--processes", type=int, default=1, help="N one-thread processes training the same model at once (default 1)"
    )
    parser.add_argument(
        "--keras-batch-norm", action="store_true", help="train with Keras' own batch norm ops (the slow baseline)"
    )
    parser.add_argument("--xla", action="store_true", help="compile the training step with XLA (op determinism kept)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps after the first (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="clips per training step (default 32)")
    arguments = parser.parse_args(argv)
    if arguments.processes < 1 or arguments.threads < 1 or arguments.seconds <= 0:
        parser.error("--processes and --threads must be >= 1 and --seconds > 0")
    if arguments.inter_op is None:
        arguments.inter_op = arguments.threads
    elif arguments.inter_op < 1:
        parser.error("--inter-op must be >= 1")
    return arguments


def forward_flops(model: Any) -> int:
    """Forward FLOPs per clip (2 per multiply-add) of the convolution, dense and recurrent layers of `model`."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * height * width * channels_out * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            positions = math.prod(layer.output.shape[1:-1])
            total += 2 * positions * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.LSTM | keras.layers.GRU):
            gates = 4 if isinstance(layer, keras.layers.LSTM) else 3
            _, steps, features = layer.input.shape
            total += 2 * steps * gates * (features + layer.units) * layer.units
    return total


class Matmul:
    """A 2048 x 2048 `tf.matmul` in one dtype, traced once, run for a while at a time."""

    def __init__(self, dtype: str) -> None:
        tf = import_tensorflow()
        rng = np.random.default_rng(0)
        a, b = (tf.cast(tf.constant(rng.normal(size=(MATMUL_N, MATMUL_N)).astype(np.float32)), dtype) for _ in "ab")
        self._product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), "float32")))
        self._product().numpy()  # trace, warm oneDNN's kernel cache
        self.flops, self.seconds = 0.0, 0.0

    def run(self, seconds: float) -> float:
        """Multiply for about `seconds`; returns this run's GFLOP/s and adds it to the totals."""
        flops, started = 0.0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self._product().numpy()
            flops += 2 * MATMUL_N**3
        elapsed = time.perf_counter() - started
        self.flops, self.seconds = self.flops + flops, self.seconds + elapsed
        return flops / elapsed / 1e9

    @property
    def gflops(self) -> float:
        """The mean rate over every run so far."""
        return self.flops / self.seconds / 1e9


def configure(settings: Settings) -> None:
    """TensorFlow's thread pools and op determinism, as training sets them; before TensorFlow runs anything."""
    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op)
    tf.config.experimental.enable_op_determinism()


def measure(
    model_name: str, clip_seconds: float, settings: Settings, ready: Callable[[], Any] | None = None
) -> Measurement:
    """Train `model_name` on random `clip_seconds` clips for `settings.seconds` after warm-up; see the module.
    `ready`, if given, is called between the warm-up and the timed steps (processes wait there for each other)."""
    tf = import_tensorflow()
    import keras

    from genreflow.tasks.training.train import compile_for_training

    frames = FeatureConfig().frames_for(clip_seconds)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    with dtype_policy(settings.precision):
        model = build_model(model_name, (frames, FeatureConfig().n_mels), GENRES)
    compile_for_training(model, 1e-3, fused_batch_norm=settings.fused_batch_norm)
    if settings.xla:  # set past Keras' setter, which turns XLA off whenever op determinism is on
        model._jit_compile = True
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(settings.batch, frames, FeatureConfig().n_mels)).astype(np.float32)
    labels = np.eye(GENRES, dtype=np.float32)[rng.integers(0, GENRES, size=settings.batch)]
    data = tf.data.Dataset.from_tensors((clips, labels)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=settings.warmup_steps, epochs=1, verbose=0)
    step_s = (time.perf_counter() - started) / settings.warmup_steps
    matmul = Matmul("float32")
    if ready is not None:
        ready()
    # Training and matmul alternate in ROUNDS slices, so that both see the same share of the cores when
    # other work comes and goes; the matmul gets a quarter of the training's time.
    chunk = max(1, round(settings.seconds / ROUNDS / step_s))
    steps, elapsed = 0, 0.0
    for _ in range(ROUNDS):
        matmul.run(settings.seconds / ROUNDS / 4)
        started = time.perf_counter()
        model.fit(data, steps_per_epoch=chunk, epochs=1, verbose=0)
        elapsed += time.perf_counter() - started
        steps += chunk
    matmul.run(settings.seconds / ROUNDS / 4)
    clips_per_s = steps * settings.batch / elapsed
    gflop = forward_flops(model) / 1e9
    train = 3 * gflop * clips_per_s
    return Measurement(
        model_name,
        clip_seconds,
        frames,
        settings.precision,
        settings.threads,
        1,
        clips_per_s,
        gflop,
        train,
        matmul.gflops,
        train / matmul.gflops,
        steps,
    )


def _child(model: str, clip: float, settings: Settings, barrier: Any, results: Any) -> None:
    """One of `--processes`: build and warm up, wait for the others (so the timed steps overlap), measure."""
    configure(settings)
    results.put(asdict(measure(model, clip, settings, ready=barrier.wait)))


def measure_in_processes(model: str, clip: float, settings: Settings, processes: int) -> Measurement:
    """`processes` one-thread processes training `model` at once; clips/s and FLOP/s summed, ratios averaged."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    one_thread = Settings(**{**asdict(settings), "threads": 1, "inter_op": 1})
    children = [
        context.Process(target=_child, args=(model, clip, one_thread, barrier, results)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    found = [Measurement(**results.get()) for _ in children]
    for child in children:
        child.join()
    first = found[0]
    return Measurement(
        model,
        clip,
        first.frames,
        settings.precision,
        1,
        processes,
        sum(item.clips_per_s for item in found),
        first.forward_gflop_per_clip,
        sum(item.train_gflops for item in found),
        sum(item.matmul_fp32_gflops for item in found),
        sum(item.train_gflops for item in found) / sum(item.matmul_fp32_gflops for item in found),
        sum(item.steps for item in found),
    )


def table(rows: list[Measurement]) -> str:
    """The measurements as a markdown table."""
    lines = [
        "| model | clip s | precision | threads x processes | clips/s | fwd GFLOP/clip | train GFLOP/s "
        "| fp32 matmul GFLOP/s | of fp32 matmul |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.clip_seconds:g} | {row.precision} | {row.threads} x {row.processes} "
            f"| {row.clips_per_s:.1f} | {row.forward_gflop_per_clip:.3f} | {row.train_gflops:.0f} "
            f"| {row.matmul_fp32_gflops:.0f} | {row.of_fp32_matmul:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the bench; print the table and a last line of JSON."""
    arguments = parse_arguments(argv)
    settings = Settings(
        arguments.seconds,
        arguments.threads,
        arguments.inter_op,
        arguments.precision,
        not arguments.keras_batch_norm,
        arguments.warmup_steps,
        arguments.xla,
        arguments.batch,
    )
    models = [name.strip() for name in arguments.models.split(",") if name.strip()]
    clips = [float(value) for value in arguments.clips.split(",") if value.strip()]
    rows: list[Measurement] = []
    if arguments.processes > 1:
        for model in models:
            for clip in clips:
                rows.append(measure_in_processes(model, clip, settings, arguments.processes))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        matmul32 = rows[0].matmul_fp32_gflops if rows else 0.0
        bf16 = None
    else:
        configure(settings)
        for model in models:
            for clip in clips:
                rows.append(measure(model, clip, settings))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        fp32, bf16_matmul = Matmul("float32"), Matmul("bfloat16") if cpu_supports_bf16() else None
        for _ in range(2):  # alternated, as the figures' noise comes and goes
            fp32.run(1.0)
            if bf16_matmul:
                bf16_matmul.run(1.0)
        matmul32, bf16 = fp32.gflops, bf16_matmul.gflops if bf16_matmul else None
    print()
    print(f"CPU: {cpu_model()}; bf16 flags: {sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16', 'amx_tile'})}")
    print(f"fp32 matmul {matmul32:.0f} GFLOP/s" + (f", bf16 matmul {bf16:.0f} GFLOP/s" if bf16 else ""))
    print(table(rows))
    summary = {
        "cpu": cpu_model(),
        "settings": {
            **asdict(settings),
            **({"threads": 1, "inter_op": 1} if arguments.processes > 1 else {}),
            "processes": arguments.processes,
        },
        "matmul_fp32_gflops": round(matmul32, 1),
        "matmul_bf16_gflops": round(bf16, 1) if bf16 else None,
        "results": [
            {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(row).items()}
            for row in rows
        ],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
