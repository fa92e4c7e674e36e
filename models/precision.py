"""Which precision a model trains in: float32, or Keras' mixed_bfloat16 where bfloat16 pays.

`resolve_precision` turns the requested setting ('auto', 'float32' or 'bfloat16') into the one used. 'auto'
picks bfloat16 only for a model whose training bench/train_speed.py measured faster in mixed_bfloat16 on
that kind of device (`BF16_PAYS`), and only where the hardware computes in bfloat16 natively: a CPU with
AVX512_BF16 or AMX, a GPU of compute capability 8.0 or newer. Elsewhere bfloat16 is emulated, and slower.
`dtype_policy` applies the choice while a model is built (Keras fixes a layer's dtypes when it is made).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from genreflow.core import PRECISIONS, TrainingSettings

if TYPE_CHECKING:
    from genreflow.models.spec import ModelSpec

CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
MIN_GPU_CAPABILITY = (8, 0)  # Ampere: bfloat16 tensor cores

# Models measured faster in mixed_bfloat16 than in float32, with the same accuracy on gtzan-mini
# (docs/benchmarks.md), by kind of device. On the Sapphire Rapids-class CPU (AMX) the CRNN trained 1.8-2.0x and
# the CNN 1.2-1.9x as many clips per second in bfloat16; the RNN was no faster. No GPU has been measured yet, so
# 'auto' keeps float32 there until one is.
BF16_PAYS: dict[str, frozenset[str]] = {"cpu": frozenset({"cnn", "crnn"}), "gpu": frozenset()}


CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_field(name: str, cpuinfo: Path = CPUINFO) -> str | None:
    """The first value of `name` in /proc/cpuinfo ("model name", "flags"), or None where there is none."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where /proc/cpuinfo is absent)."""
    return frozenset((cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what `platform` knows elsewhere."""
    import platform

    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_supports_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX)."""
    return bool(CPU_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def gpu_supports_bf16(device: str) -> bool:
    """Whether a GPU named 'gpu:<major>.<minor>' (its compute capability) has bfloat16 tensor cores."""
    _, _, capability = device.partition(":")
    try:
        major, minor = (int(part) for part in capability.split("."))
    except ValueError:
        raise ValueError(f"a GPU is named 'gpu:<major>.<minor>' (compute capability), got {device!r}") from None
    return (major, minor) >= MIN_GPU_CAPABILITY


def resolve_precision(requested: str, model_name: str, device: str) -> str:
    """'float32' or 'bfloat16' for training `model_name` on `device` ('cpu', or 'gpu:<compute capability>',
    e.g. 'gpu:8.0'). An explicit 'float32' or 'bfloat16' is kept; 'auto' is bfloat16 only where it pays."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    kind = device.partition(":")[0]
    if kind not in BF16_PAYS:
        raise ValueError(f"device must be 'cpu' or 'gpu:<major>.<minor>', got {device!r}")
    if requested != "auto":
        return requested
    native = cpu_supports_bf16() if kind == "cpu" else gpu_supports_bf16(device)
    return "bfloat16" if native and model_name in BF16_PAYS[kind] else "float32"


def cell_precision(requested: str, model_spec: ModelSpec) -> str:
    """The precision a cell trains in: `requested` resolved for its model on this machine's device; float32 for
    the models fitted by scikit-learn (no epochs, no Keras), whatever was asked."""
    if not model_spec.neural:
        return "float32"
    return resolve_precision(requested, model_spec.name, training_device())


def resolved_settings(settings: TrainingSettings, model_spec: ModelSpec) -> TrainingSettings:
    """`settings` as a cell of `model_spec` trains with them here: the precision it trains in on this device, and
    the model's own settings (genreflow.core.NETWORK_OWN) where the run left them open. What its cell.json
    records and its cache key hashes, so that 'auto' (or a setting left open) and what it resolves to share a key."""
    own = model_spec.own_settings(settings)
    return replace(own, precision=cell_precision(settings.precision, model_spec))


@cache
def training_device() -> str:
    """'cpu', or 'gpu:<compute capability>' of the first GPU TensorFlow sees: the device cells train on."""
    from genreflow.models import import_tensorflow

    tensorflow = import_tensorflow()
    gpus = tensorflow.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    major, minor = tensorflow.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return f"gpu:{major}.{minor}"


def device_description() -> str:
    """The training device for a cell's record: 'cpu: <CPU model>' or 'gpu:<capability> <GPU name>'."""
    device = training_device()
    if device == "cpu":
        return f"cpu: {cpu_model()}"
    from genreflow.models import import_tensorflow

    tensorflow = import_tensorflow()
    name = tensorflow.config.experimental.get_device_details(tensorflow.config.list_physical_devices("GPU")[0])
    return f"{device} {name.get('device_name', 'GPU')}"


def keras_policy(precision: str) -> str:
    """The Keras dtype policy of a resolved precision."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"a resolved precision is 'float32' or 'bfloat16', got {precision!r}")
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


@contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build models inside this block to build them in `precision` ('float32' or 'bfloat16'); Keras' global
    policy is restored afterwards. A model keeps the dtypes it was built with."""
    import keras

    policy = keras_policy(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
