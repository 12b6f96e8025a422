"""Small argument checks shared by the Python layer; each names the argument."""

import math
import numbers

import numpy as np


def positive_int(value, argument):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)


def nonneg_int(value, argument):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{argument} must be a non-negative integer, got {value!r}")
    return int(value)


def real(value, argument, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (ends open when asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{argument} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{argument} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def seed(value, argument="seed"):
    if value is None:
        return int(np.random.SeedSequence().entropy % (2 ** 63))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{argument} must be >= 0, got {value!r}")
    return int(value) % (2 ** 63)
