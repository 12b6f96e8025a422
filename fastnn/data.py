"""Turning user data into what the kernels take, with clear errors; row
sources for data that is not in memory.

In memory: features become a C-contiguous 2-D array of the model's dtype (a
copy only when the input is not already one), targets and weights are
checked whole (``as_features``, ``as_targets_array``, ``check_sample_weight``).

Not in memory: ``RowSource`` reads contiguous row ranges of anything with a
``shape`` and row slicing -- ``np.memmap``, ``np.load(path, mmap_mode="r")``,
an ndarray backed by a memory map, h5py datasets, zarr and dask arrays -- or
of a ``.npy`` file given by its path (opened with ``mmap_mode="r"``).
``is_streamed`` says which inputs ``fit``/``predict``/``evaluate`` stream
instead of converting whole; the streaming itself is in ``streaming.py``.

Shuffling on disk (``window_plan``): the rows are cut into blocks of
``block_rows`` contiguous rows; each epoch visits the blocks in a fresh random
order, ``window_blocks`` blocks at a time, and shuffles the rows of each such
window together. Reads stay large and sequential, and every row is visited
exactly once per epoch, but unlike a full shuffle a minibatch only mixes rows
from the ``window_blocks`` blocks of its window: data sorted on disk (say by
label) needs windows spanning several of its runs, i.e. blocks much smaller
than those runs, or a shuffled copy on disk. When all rows fit in one window
the plan is the full shuffle itself (the same permutation as in memory).

Memory (``stream_layout``): the trainer keeps two windows (one read in the
background while the other trains) plus one block of conversion scratch, so
``block_rows = memory_budget / (row_bytes * (2 * window_blocks + 1))``,
``row_bytes`` being one row of features, encoded targets and weights in the
model's dtype plus its 8-byte index. The default budget, 16 MiB, bounds the
extra memory of a streamed fit whatever the size of the data; only per-row
outputs (predictions, the epoch's batch losses) grow with it. It is small on
purpose: a file of a few tens of MB is already streamed rather than read whole,
and measured on a 381 MB file (2,000,000 x 25 float64), smaller windows were
no slower but faster (an epoch of a 25-8-3 net, batch 32: 0.26 s at 16 MiB,
0.39 s at 256 MiB; predict 0.14 s against 0.18 s), the next window's read
overlapping more of the training. The quality of the windowed shuffle depends
on the number of blocks per window, not on their size.

``iter_windows`` gives users the same stream of shuffled windows, e.g. to
drive ``Sequential.partial_fit`` themselves.
"""

import mmap
import os

import numpy as np

from . import _validate

__all__ = ["RowSource", "is_streamed", "iter_windows", "window_plan", "stream_layout",
           "open_npy", "as_features", "as_targets_array", "check_sample_weight",
           "DEFAULT_MEMORY_BUDGET", "DEFAULT_WINDOW_BLOCKS"]

DEFAULT_MEMORY_BUDGET = 16 * 2 ** 20
DEFAULT_WINDOW_BLOCKS = 8
_STREAMED_MODULES = ("h5py", "zarr", "dask")


def _as_array(X, argument):
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{argument} must be an array-like of numbers, got {type(X).__name__}")
    if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
        try:
            return np.asarray(X)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{argument} could not be converted to an array: {e}") from None
    raise TypeError(f"{argument} must be an array-like, got {type(X).__name__}")


# a float dtype's bits as unsigned integers, and its exponent field
_EXPONENT_BITS = {np.dtype(np.float32): (np.uint32, np.uint32(0x7F800000)),
                  np.dtype(np.float64): (np.uint64, np.uint64(0x7FF0000000000000))}


def _all_finite(Xc):
    """Whether every entry of the float array Xc is finite, in one pass."""
    bits = _EXPONENT_BITS.get(Xc.dtype)
    if bits is not None and Xc.flags.c_contiguous:
        from .kernels.reduce import exponent_max
        return exponent_max(Xc.reshape(-1).view(bits[0]), bits[1]) != bits[1]
    # any other layout or dtype: a NaN or infinity makes the sum non-finite
    # (an overflowing sum falls back to the elementwise test)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(Xc.sum())) or bool(np.isfinite(Xc).all())


def narrowed(X):
    """float64 X (C-contiguous) rounded to a new float32 array of its shape,
    and whether every rounded entry is finite: the conversion and the check
    in one pass (``kernels.reduce.narrow_finite``)."""
    from .kernels.reduce import narrow_finite
    Xc = np.empty(X.shape, np.float32)
    return Xc, narrow_finite(X.reshape(-1), Xc.reshape(-1))


def _narrows(X, dtype):
    """Whether ``narrowed`` converts X to ``dtype``."""
    return (type(X) is np.ndarray and X.dtype == np.float64 and dtype == np.float32
            and X.ndim == 2 and X.flags.c_contiguous and X.size > 0)


def _check_finite(Xc, X, argument, dtype):
    """ValueError naming ``argument`` unless the converted rows Xc are finite
    (X: the same rows before conversion, to say why)."""
    if _all_finite(Xc):
        return
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError(f"{argument} contains NaN or infinite values")
    raise ValueError(f"{argument} has values too large for {np.dtype(dtype).name}")


def _check_feature_shape(shape, dtype, argument):
    if dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold numbers, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{argument} must be 2-D (rows, features), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{argument} is empty (shape {shape})")


def _numbers_from_objects(X, argument):
    """An object array (e.g. from a DataFrame mixing bool and float columns)
    as float64, as scikit-learn converts it: TypeError naming ``argument`` when
    an entry is not a number, ValueError when one is missing (None)."""
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError):
        if any(v is None for v in X.ravel()):
            raise ValueError(f"{argument} contains missing values (None)") from None
        raise TypeError(f"{argument} must hold numbers; its object entries include "
                        "values that are not") from None


def as_features(X, dtype, argument="X"):
    """A finite, C-contiguous (n, d) array of ``dtype`` with n, d >= 1."""
    X = _as_array(X, argument)
    if X.dtype.kind == "O" and X.ndim == 2 and X.size:
        X = _numbers_from_objects(X, argument)
    _check_feature_shape(X.shape, X.dtype, argument)
    if _narrows(X, np.dtype(dtype)):
        Xc, finite = narrowed(X)
        if not finite:
            _check_finite(Xc, X, argument, dtype)
        return Xc
    with np.errstate(over="ignore", invalid="ignore"):
        Xc = np.ascontiguousarray(X, dtype=dtype)
    if not Xc.flags.writeable:      # a read-only array is another Numba type (a compile)
        Xc = Xc.copy()
    _check_finite(Xc, X, argument, dtype)
    return Xc


def as_targets_array(y, n, argument="y"):
    """``y`` as an array of n rows (1-D or 2-D), not yet encoded."""
    y = _as_array(y, argument)
    _check_target_shape(y.shape, n, argument)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{argument} contains NaN or infinite values")
    if y.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y.ravel()):
            raise ValueError(f"{argument} contains missing values")
    if not y.flags.writeable:       # encoded targets reach the kernels: one Numba type
        y = y.copy()
    return y


def _check_target_shape(shape, n, argument):
    if len(shape) not in (1, 2):
        raise ValueError(f"{argument} must be 1-D or 2-D, got shape {shape}")
    if shape[0] != n:
        raise ValueError(f"{argument} has {shape[0]} rows but X has {n}")
    if len(shape) == 2 and shape[1] == 0:
        raise ValueError(f"{argument} has no columns")


def check_sample_weight(sample_weight, n, dtype, argument="sample_weight"):
    """(n,) non-negative finite weights of ``dtype``, or an empty array for none."""
    if sample_weight is None:
        return np.zeros(0, dtype)
    w = _as_array(sample_weight, argument)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold numbers, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{argument} must have shape ({n},), got {w.shape}")
    w = weights_block(w, dtype, argument)
    if not w.sum() > 0:
        raise ValueError(f"{argument} must not be all zero")
    return w


def weights_block(w, dtype, argument="sample_weight"):
    """Row weights as a writeable C-contiguous array of ``dtype``, checked
    finite and non-negative (not checked for an all-zero total)."""
    w = np.ascontiguousarray(w, dtype=dtype)
    if not w.flags.writeable:
        w = w.copy()
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{argument} must be finite and non-negative")
    return w


# ------------------------------------------------------------------ row sources
def is_streamed(data):
    """Whether fit/predict stream ``data`` block by block instead of
    converting it whole: a ``RowSource``, a path (``.npy``), an ndarray backed
    by a memory map (``np.memmap``, ``np.load(..., mmap_mode="r")`` and views
    of them), an h5py dataset, a zarr or dask array, or any other object with
    ``shape`` and row slicing but no ``__array__`` (scipy sparse matrices
    excepted: they are converted as before)."""
    if isinstance(data, (RowSource, str, bytes, os.PathLike)):
        return True
    if isinstance(data, np.ndarray):
        return _is_mapped(data)
    module = type(data).__module__.split(".")
    if module[0] in _STREAMED_MODULES:
        return True
    if module[:2] == ["scipy", "sparse"] or hasattr(data, "toarray"):
        return False
    return (not hasattr(data, "__array__") and not isinstance(data, (list, tuple))
            and hasattr(data, "shape") and hasattr(data, "__getitem__"))


def _is_mapped(a):
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def open_npy(path, argument="X"):
    """The array in the ``.npy`` file at ``path``, memory-mapped read-only."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not str(path).endswith(".npy"):
        raise TypeError(f"{argument} must be an array-like of numbers or the path of a .npy "
                        f"file, got {type(path).__name__} {str(path)[:80]!r}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{argument}: cannot read {str(path)!r} as a .npy array: {e}") from None


class RowSource:
    """Contiguous row ranges of a (possibly on-disk) array.

    ``RowSource(data)`` takes anything ``is_streamed`` accepts, an in-memory
    array-like, or another RowSource. ``shape``/``dtype`` are the data's (over
    the rows in range); ``read(start, stop)`` returns rows start..stop as an
    ndarray (a view of a memory map where possible: nothing is read until it
    is used); ``rows(start, stop)`` is a RowSource over a sub-range. Nothing
    is converted or checked for values here; the readers do it block by block.
    """

    def __init__(self, data, argument="X"):
        if isinstance(data, RowSource):
            self.__dict__.update(data.__dict__)
            self.argument = argument
            return
        if isinstance(data, (str, bytes, os.PathLike)):
            data = open_npy(data, argument)
        elif not is_streamed(data):
            data = _as_array(data, argument)
        shape = getattr(data, "shape", None)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"{argument} must be an array-like with a shape, got "
                            f"{type(data).__name__}") from None
        if not shape:
            raise ValueError(f"{argument} must have rows, got a scalar")
        dtype = getattr(data, "dtype", None)
        if dtype is None:
            dtype = np.asarray(data[0:1]).dtype
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{argument} has an unknown dtype {dtype!r}") from None
        self._data, self._start = data, 0
        self.shape = shape
        self.argument = argument

    @property
    def n_rows(self):
        return self.shape[0]

    def __len__(self):
        return self.shape[0]

    def read(self, start, stop):
        """Rows [start, stop) of this source as an ndarray."""
        a = self._start + start
        return np.asarray(self._data[a:a + (stop - start)])

    def rows(self, start, stop):
        """A RowSource over rows [start, stop) of this one."""
        sub = RowSource(self, self.argument)
        sub._start = self._start + start
        sub.shape = (stop - start,) + self.shape[1:]
        return sub

    def blocks(self, block_rows):
        """(start, stop) of consecutive blocks of ``block_rows`` rows."""
        n = self.shape[0]
        return [(a, min(n, a + block_rows)) for a in range(0, n, block_rows)]

    def __repr__(self):
        return (f"RowSource({type(self._data).__name__}, shape={self.shape}, "
                f"dtype={self.dtype.name})")


def feature_source(X, argument="X"):
    """A RowSource over 2-D, non-empty numeric features (checked by shape
    and dtype only; values are checked as blocks are read)."""
    src = RowSource(X, argument)
    _check_feature_shape(src.shape, src.dtype, argument)
    return src


def target_source(y, n, argument="y"):
    """A RowSource over n rows of 1-D or 2-D targets (values checked as read)."""
    if y is None:
        raise TypeError(f"{argument} must be an array-like, got NoneType")
    src = RowSource(y, argument)
    _check_target_shape(src.shape, n, argument)
    return src


def weight_source(sample_weight, n, argument="sample_weight"):
    """A RowSource over n row weights, or None for none."""
    if sample_weight is None:
        return None
    src = RowSource(sample_weight, argument)
    if src.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold numbers, got dtype {src.dtype}")
    if len(src.shape) != 1 or src.shape[0] != n:
        raise ValueError(f"{argument} must have shape ({n},), got {src.shape}")
    return src


def read_features(src, start, stop, out):
    """Rows [start, stop) of feature source ``src`` converted into ``out``
    (rows, d) in place and checked finite (ValueError naming the source)."""
    raw = src.read(start, stop)
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(out, raw, casting="unsafe")
    _check_finite(out, raw, src.argument, out.dtype)
    return out


# ------------------------------------------------------------------ layout
def stream_layout(row_bytes, memory_budget=None, block_rows=None, window_blocks=None):
    """(block_rows, window_blocks) for rows of ``row_bytes`` bytes: two windows
    of ``window_blocks`` blocks plus one block of scratch within
    ``memory_budget`` bytes (default DEFAULT_MEMORY_BUDGET). An explicit
    ``block_rows`` wins over the budget."""
    budget = check_memory_budget(memory_budget)
    window_blocks = (DEFAULT_WINDOW_BLOCKS if window_blocks is None
                     else _validate.positive_int(window_blocks, "window_blocks"))
    if block_rows is None:
        block_rows = max(1, int(budget // (row_bytes * (2 * window_blocks + 1))))
    else:
        block_rows = _validate.positive_int(block_rows, "block_rows")
    return block_rows, window_blocks


def check_memory_budget(memory_budget):
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    return _validate.positive_int(memory_budget, "memory_budget")


def window_plan(n_rows, block_rows, window_blocks, rng=None, shuffle=True):
    """One epoch's reading order: a list of windows, each a list of
    ``(start, stop)`` blocks of contiguous rows; every row is in exactly one
    block. With ``shuffle`` the blocks come in a random order drawn from
    ``rng`` (nothing is drawn when all rows fit in one window, whose blocks
    then stay in file order); the caller shuffles the rows within each window."""
    blocks = [(a, min(n_rows, a + block_rows)) for a in range(0, n_rows, block_rows)]
    if len(blocks) <= window_blocks:
        return [blocks]
    if shuffle:
        blocks = [blocks[i] for i in rng.permutation(len(blocks))]
    return [blocks[i:i + window_blocks] for i in range(0, len(blocks), window_blocks)]


def iter_windows(X, *arrays, shuffle=True, seed=None, memory_budget=None, block_rows=None,
                 window_blocks=None):
    """Yield the rows of X (and of each of ``arrays``, row-aligned: targets,
    weights) one shuffled window at a time, as in-memory arrays of their own
    dtype: the same windowed shuffle the trainer uses (see the module
    docstring), from ``np.random.default_rng(seed)``. Each row comes exactly
    once per pass; a tuple (X_window, *array_windows) when arrays are given,
    else X_window.

        for Xw, yw in fnn.data.iter_windows("X.npy", "y.npy", seed=0):
            model.partial_fit(Xw, yw)
    """
    src = RowSource(X, "X")
    others = [RowSource(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    for i, o in enumerate(others):
        if o.n_rows != src.n_rows:
            raise ValueError(f"arrays[{i}] has {o.n_rows} rows but X has {src.n_rows}")
    row_bytes = sum(s.dtype.itemsize * int(np.prod(s.shape[1:])) for s in [src] + others) + 8
    block_rows, window_blocks = stream_layout(row_bytes, memory_budget, block_rows,
                                              window_blocks)
    rng = np.random.default_rng(seed)
    for window in window_plan(src.n_rows, block_rows, window_blocks, rng, shuffle):
        parts = [np.concatenate([s.read(a, b) for a, b in window]) for s in [src] + others]
        if shuffle:
            perm = rng.permutation(parts[0].shape[0])
            parts = [p[perm] for p in parts]
        yield tuple(parts) if others else parts[0]
