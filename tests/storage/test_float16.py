"""to_float16 gives numpy's float32 -> float16 cast bit for bit: every rounding boundary, every special value."""

from __future__ import annotations

import numpy as np
import pytest

from genreflow.storage.float16 import to_float16


def assert_same_bits_as_numpy(values: np.ndarray) -> None:
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
        got = to_float16(values)
    assert got.dtype == np.float16 and got.shape == values.shape
    mismatched = np.flatnonzero(got.view(np.uint16) != expected.view(np.uint16))
    assert mismatched.size == 0, (
        f"{mismatched.size} values differ, e.g. {values.reshape(-1)[mismatched[:5]]}: "
        f"{got.reshape(-1)[mismatched[:5]]} instead of {expected.reshape(-1)[mismatched[:5]]}"
    )


def float32_neighbourhood(centres: np.ndarray) -> np.ndarray:
    """Each float32 value and the 2 float32 values either side of it, in both signs."""
    bits = centres.astype(np.float32).view(np.uint32).astype(np.int64)
    around = (bits[:, None] + np.arange(-2, 3)).clip(0, 0x7F800000).astype(np.uint32).view(np.float32)
    return np.concatenate([around.reshape(-1), -around.reshape(-1)])


def test_every_float16_value_and_every_tie_between_two_rounds_as_numpy_does():
    halves = np.arange(0x7C01, dtype=np.uint16).view(np.float16).astype(np.float32)  # 0 up to infinity
    ties = (halves[:-1].astype(np.float64) + halves[1:]) / 2  # exactly representable in float32
    assert_same_bits_as_numpy(float32_neighbourhood(halves))
    assert_same_bits_as_numpy(float32_neighbourhood(ties.astype(np.float32)))


def test_random_bit_patterns_and_special_values_cast_as_numpy_does():
    random_bits = np.random.default_rng(7).integers(0, 2**32, size=2_000_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0.0, -0.0, 1e-45, 5.96e-8, 6.1e-5, 65504, 65519.99, 65520, 1e38, np.inf, -np.inf, np.nan])
    assert_same_bits_as_numpy(random_bits.view(np.float32))
    assert_same_bits_as_numpy(float32_neighbourhood(specials[np.isfinite(specials)]))
    assert_same_bits_as_numpy(specials.astype(np.float32))


@pytest.mark.parametrize("shape", [(0,), (1,), (1293, 128), (3, 5, 7)])
def test_shapes_and_non_contiguous_input_are_kept(shape: tuple[int, ...]):
    values = np.random.default_rng(1).normal(0, 40, size=shape).astype(np.float32)
    assert_same_bits_as_numpy(values)
    assert_same_bits_as_numpy(np.asfortranarray(values))


def test_other_dtypes_are_refused_rather_than_rounded_twice():
    with pytest.raises(TypeError, match="float64"):
        to_float16(np.zeros(3))
