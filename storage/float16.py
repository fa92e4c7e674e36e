"""float32 -> float16 as numpy casts it (round half to even), bit for bit, in whole-array integer steps.

Why: the store keeps log-mels as float16, and numpy's cast converts one element at a time (its vector path
needs F16C, above the x86-64 baseline numpy's wheels are built for): a third of its CPU (docs/design.md).

How: for a value whose float16 is a normal number, the float16 bits are the float32 bits with the exponent's
bias moved from 127 to 15 and the mantissa rounded from 23 to 10 bits; rounding is an addition (0xFFF, plus the
kept mantissa's lowest bit, so that ties go to even) whose carry may rightly step the exponent. Zeros,
subnormals, values that round to infinity, infinities and NaNs (rare in log-mels) are cast by numpy itself.
"""

from __future__ import annotations

import numpy as np

_DROPPED_BITS = np.uint32(13)  # float32 keeps 23 mantissa bits, float16 10
_ROUND_AND_REBIAS = np.uint32((0xFFF - (112 << 23)) % 2**32)  # + just under half a float16 ulp, exponent - 112
_SIGN_AFTER_SHIFT = np.uint32(1 << 18)  # where the sign bit (31) lies once shifted
_SIGN_MOVE = np.uint32(3)  # from bit 18 to float16's bit 15
_EXPONENT_AND_MANTISSA = np.uint32(0x7FFF)
_MAGNITUDE = np.uint32(0x7FFFFFFF)
_SMALLEST_NORMAL = np.uint32(0x38800000)  # 2**-14, float16's smallest normal number, as float32 bits
_NORMAL_SPAN = np.uint32(0x477FF000 - 0x38800000)  # up to 65,520, which float16 rounds to infinity


def to_float16(values: np.ndarray) -> np.ndarray:
    """`values.astype(np.float16)` for float32 `values`, same shape, bit for bit."""
    if values.dtype != np.float32:  # float64 would be rounded twice (to float32 first), unlike astype
        raise TypeError(f"to_float16 casts float32 arrays, not {values.dtype}")
    values = np.ascontiguousarray(values)
    bits = values.view(np.uint32)
    half = bits >> _DROPPED_BITS
    half &= np.uint32(1)  # the lowest kept mantissa bit: ties round to even
    half += bits
    half += _ROUND_AND_REBIAS
    half >>= _DROPPED_BITS
    sign = half & _SIGN_AFTER_SHIFT
    half &= _EXPONENT_AND_MANTISSA
    sign >>= _SIGN_MOVE
    half |= sign
    result = half.astype(np.uint16).view(np.float16)
    _cast_outside_normal_range(values, np.bitwise_and(bits, _MAGNITUDE, out=sign), result)
    return result


def _cast_outside_normal_range(values: np.ndarray, magnitude_bits: np.ndarray, result: np.ndarray) -> None:
    """Let numpy cast the values whose float16 is not a normal number (overwrites `magnitude_bits`)."""
    magnitude_bits -= _SMALLEST_NORMAL  # below the smallest normal wraps round to beyond the span
    outside = np.flatnonzero(magnitude_bits >= _NORMAL_SPAN)
    if outside.size:
        result.reshape(-1)[outside] = values.reshape(-1)[outside].astype(np.float16)
