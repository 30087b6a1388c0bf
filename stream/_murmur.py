"""Kafka's default partitioner (murmur2 of the key's bytes) over many integer keys at once.

The keys are users' decimal ids; each digit count is one group of equal-length keys, hashed in
numpy's wrapping 32-bit arithmetic, as the Java client does in `Utils.murmur2`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_SEED, _M, _R = np.uint32(0x9747B28C), np.uint32(0x5BD1E995), np.uint32(24)
_POWERS = 10 ** np.arange(19, dtype=np.int64)  # 10**0 .. 10**18: a non-negative int64 has <= 19 digits
_ASCII_ZERO = np.uint32(ord("0"))

Int64s = npt.NDArray[np.int64]


def murmur2_partitions(keys: Int64s, partitions: int) -> Int64s:
    """Per non-negative integer key, the partition Kafka's default partitioner gives `str(key)`."""
    digit_counts = np.searchsorted(_POWERS, keys, side="right")
    digit_counts[keys == 0] = 1
    result = np.empty(keys.size, dtype=np.int64)
    for length in np.unique(digit_counts).tolist():
        group = digit_counts == length
        result[group] = _hashes(_digits(keys[group], length)) & 0x7FFFFFFF
    return result % partitions


def _digits(keys: Int64s, length: int) -> npt.NDArray[np.uint32]:
    """The ASCII bytes of each key's decimal digits, a row per key."""
    places = _POWERS[length - 1 :: -1][:length]
    return ((keys[:, None] // places) % 10).astype(np.uint32) + _ASCII_ZERO


def _hashes(data: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    rows, length = data.shape
    with np.errstate(over="ignore"):
        h = np.full(rows, _SEED ^ np.uint32(length), dtype=np.uint32)
        whole = length - length % 4
        for i in range(0, whole, 4):
            k = data[:, i] | data[:, i + 1] << 8 | data[:, i + 2] << 16 | data[:, i + 3] << 24
            k *= _M
            k ^= k >> _R
            k *= _M
            h *= _M
            h ^= k
        tail = length % 4
        if tail:
            for position in range(tail - 1, -1, -1):
                h ^= data[:, whole + position] << np.uint32(8 * position)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h
