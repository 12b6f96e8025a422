"""Turning user data into what the kernels take, with clear errors.

Features become a C-contiguous 2-D array of the model's dtype (a copy only when
the input is not already one). Streaming of on-disk data builds on this.
"""

import numpy as np


def _as_array(X, argument):
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{argument} must be an array-like of numbers, got {type(X).__name__}")
    if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
        try:
            return np.asarray(X)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{argument} could not be converted to an array: {e}") from None
    raise TypeError(f"{argument} must be an array-like, got {type(X).__name__}")


def as_features(X, dtype, argument="X"):
    """A finite, C-contiguous (n, d) array of ``dtype`` with n, d >= 1."""
    X = _as_array(X, argument)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{argument} must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{argument} is empty (shape {X.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        Xc = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(Xc).all():
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError(f"{argument} contains NaN or infinite values")
        raise ValueError(f"{argument} has values too large for {np.dtype(dtype).name}")
    if not Xc.flags.writeable:      # a read-only array is another Numba type (a compile)
        Xc = Xc.copy()
    return Xc


def as_targets_array(y, n, argument="y"):
    """``y`` as an array of n rows (1-D or 2-D), not yet encoded."""
    y = _as_array(y, argument)
    if y.ndim not in (1, 2):
        raise ValueError(f"{argument} must be 1-D or 2-D, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{argument} has {y.shape[0]} rows but X has {n}")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"{argument} has no columns")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{argument} contains NaN or infinite values")
    if y.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y.ravel()):
            raise ValueError(f"{argument} contains missing values")
    if not y.flags.writeable:       # encoded targets reach the kernels: one Numba type
        y = y.copy()
    return y


def check_sample_weight(sample_weight, n, dtype, argument="sample_weight"):
    """(n,) non-negative finite weights of ``dtype``, or an empty array for none."""
    if sample_weight is None:
        return np.zeros(0, dtype)
    w = _as_array(sample_weight, argument)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold numbers, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{argument} must have shape ({n},), got {w.shape}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not w.flags.writeable:
        w = w.copy()
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{argument} must be finite and non-negative")
    if not w.sum() > 0:
        raise ValueError(f"{argument} must not be all zero")
    return w
