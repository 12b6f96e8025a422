"""The benchmark workloads: data generators with fixed seeds, network shapes and
optimizer settings, each at a full size and a tiny smoke size (for CI).

Every contender trains the same network from the same initial weights
(:meth:`Workload.initial_weights`) on the same rows, and is scored on the same
held-out rows with the same metric (:func:`score`), so a fast-but-wrong result
shows up next to its time. This module imports NumPy only: the start-up
benchmark runs it in a fresh process and must not pay for anything else.

Workloads (issue #3):

1. ``w1``: 10,000 3-blob points, 2-3-3 tanh/softmax, SGD lr 0.01, batch 32.
2. ``w2``: MNIST-shaped 60,000 x 784 float32 with a teacher network,
   784-256-128-10 ReLU/softmax, Adam lr 1e-3, batch 128.
3. ``w3_b1`` .. ``w3_bfull``: 2-D Gaussian quantiles (1,400 training rows),
   2-10-10-1 tanh/sigmoid, Adam lr 1e-3, batch 1, 32, 100 and the whole set.
4. ``w4_b32``, ``w4_b200``: tabular regression, 100,000 x 50, 50-64-64-1 ReLU,
   Adam lr 1e-3, batch 32 and 200.
5. ``w5``: inference (``predict_proba``) with workload 2's network over its
   60,000 rows; every contender holds the same trained weights.
6. Start-up (fresh processes) is in ``bench/startup.py``.
"""

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

SMOKE_ENV = "FASTNN_BENCH_SMOKE"
DTYPE = np.float32


def smoke_from_env():
    """True when ``FASTNN_BENCH_SMOKE`` is set to anything but "" or "0"."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class Data:
    """Training rows (X, y) and held-out rows (X_test, y_test). X is float32
    C-contiguous; y holds int64 class labels (multiclass), 0/1 int64 labels
    (binary) or float32 values (regression), shape (n,)."""
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Workload:
    name: str              # benchmark group, e.g. "w3_b32"
    title: str             # one line for tables
    task: str              # "multiclass" | "binary" | "regression"
    widths: tuple          # (n_in, hidden..., n_out)
    activation: str        # hidden layers' activation
    optimizer: str         # "sgd" (plain, no momentum) | "adam"
    lr: float
    batch_size: int
    data: str              # generator name in GENERATORS
    n_train: int
    n_test: int
    smoke: bool = False
    inference: bool = False    # time predict_proba over the training rows, not an epoch
    seed: int = 0
    # epochs after which contenders are scored (the mean of the last three):
    # at batch 1 the row order alone moves accuracy by +-0.03 after 5 epochs
    eval_epochs: int = 5

    @property
    def loss(self):
        """fastnn's loss name for the task."""
        return {"multiclass": "softmax_cross_entropy", "binary": "binary_cross_entropy",
                "regression": "mse"}[self.task]

    @property
    def output_activation(self):
        return {"multiclass": "softmax", "binary": "sigmoid", "regression": "identity"}[self.task]

    @property
    def hidden(self):
        return self.widths[1:-1]

    def load(self):
        """The workload's :class:`Data` (generated once per process and size)."""
        return _generate(self.data, self.n_train, self.n_test, self.seed)

    def initial_weights(self):
        """[(W (in, out), b (out,)), ...] float32: Glorot-uniform for tanh nets,
        He-uniform for ReLU nets (fastnn's "auto"), zero biases. (The stream
        is one from which W1's plain SGD separates all three blobs; some
        draws leave two blobs merged for many epochs.)"""
        rng = np.random.default_rng([self.seed, 9])
        out = []
        for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:]):
            if self.activation == "relu":
                limit = math.sqrt(6.0 / fan_in)
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(DTYPE)
            out.append((W, np.zeros(fan_out, DTYPE)))
        return out

    def epoch_flops(self):
        """Multiply-adds x 2 of one training epoch's matrix products: forward,
        dW of every layer and dX of every layer but the first."""
        n = self.n_train
        mats = [a * b for a, b in zip(self.widths[:-1], self.widths[1:])]
        return 2.0 * n * (2 * sum(mats) + sum(mats[1:]))


# ----------------------------------------------------------------- sizes

_FULL = dict(w1=(10_000, 2_000), w2=(60_000, 10_000), w3=(1_400, 600), w4=(100_000, 10_000))
_SMOKE = dict(w1=(300, 100), w2=(256, 128), w3=(140, 60), w4=(400, 100))


def all_workloads(smoke=None):
    """The workload table, in report order (smoke: tiny sizes for CI)."""
    smoke = smoke_from_env() if smoke is None else bool(smoke)
    size = _SMOKE if smoke else _FULL
    w1 = Workload("w1", "W1 blobs 2-3-3 tanh, SGD, batch 32", "multiclass", (2, 3, 3),
                  "tanh", "sgd", 0.01, 32, "blobs", *size["w1"], smoke)
    w2 = Workload("w2", "W2 MNIST-shaped 784-256-128-10 relu, Adam, batch 128", "multiclass",
                  (784, 256, 128, 10), "relu", "adam", 1e-3, 128, "mnist_like", *size["w2"],
                  smoke)
    out = [w1, w2]
    n3 = size["w3"][0]
    for bs in (1, 32, 100, None):
        label = "full" if bs is None else str(bs)
        out.append(Workload(f"w3_b{label}",
                            f"W3 quantiles 2-10-10-1 tanh, Adam, batch {bs or n3}",
                            "binary", (2, 10, 10, 1), "tanh", "adam", 1e-3, bs or n3,
                            "quantiles", *size["w3"], smoke, eval_epochs=12 if bs == 1 else 5))
    for bs in (32, 200):
        out.append(Workload(f"w4_b{bs}", f"W4 tabular 50-64-64-1 relu, Adam, batch {bs}",
                            "regression", (50, 64, 64, 1), "relu", "adam", 1e-3, bs,
                            "tabular", *size["w4"], smoke))
    out.append(Workload("w5", "W5 predict_proba, W2's network, 60,000 rows"
                        if not smoke else "W5 predict_proba, W2's network (smoke)",
                        "multiclass", w2.widths, "relu", "adam", 1e-3, 128, "mnist_like",
                        *size["w2"], smoke, inference=True))
    return out


def get(name, smoke=None):
    for w in all_workloads(smoke):
        if w.name == name:
            return w
    raise ValueError(f"unknown workload {name!r}; expected one of "
                     f"{[w.name for w in all_workloads(False)]}")


NAMES = tuple(w.name for w in all_workloads(False))


# ------------------------------------------------------------- generators

def blobs(n, seed):
    """3 isotropic Gaussian blobs, std 0.8, centres uniform in [-10, 10]^2 (as
    scikit-learn's ``make_blobs(centers=3, cluster_std=0.8)``); equal class sizes."""
    rng = np.random.default_rng([seed, 1])
    centers = rng.uniform(-10, 10, (3, 2))
    y = rng.permutation(np.arange(n) % 3).astype(np.int64)
    X = centers[y] + 0.8 * rng.standard_normal((n, 2))
    return X.astype(DTYPE), y


def quantiles(n, seed):
    """2-D standard normal points; class 1 outside the circle holding half the
    mass (r^2 > 2 ln 2, the chi-square(2) median), as ``make_gaussian_quantiles``."""
    rng = np.random.default_rng([seed, 3])
    X = rng.standard_normal((n, 2))
    y = ((X * X).sum(axis=1) > 2 * math.log(2)).astype(np.int64)
    return X.astype(DTYPE), y


def mnist_like(n, seed):
    """MNIST-shaped rows: 784 "pixels" in (0, 1), the sigmoid of a fixed random
    linear image of a 16-dimensional latent point plus noise (like digits, the
    rows lie near a low-dimensional manifold); the class is the argmax of a
    fixed linear teacher on the latent point. About 90% is learnable."""
    teacher = np.random.default_rng([seed, 4])
    A = teacher.standard_normal((16, 784)).astype(DTYPE) / DTYPE(4.0)
    T = teacher.standard_normal((16, 10)).astype(DTYPE)
    rng = np.random.default_rng([seed, 5])
    Z = rng.standard_normal((n, 16), dtype=DTYPE)
    X = Z @ A
    X += DTYPE(0.5) * rng.standard_normal((n, 784), dtype=DTYPE)
    np.negative(X, out=X)
    np.exp(X, out=X)
    X += DTYPE(1)
    np.reciprocal(X, out=X)
    y = (Z @ T).argmax(axis=1).astype(np.int64)
    return X, y


def tabular(n, seed):
    """50 standard-normal features; the target is a fixed teacher 50-32-1
    (tanh) plus 10% noise, standardised."""
    teacher = np.random.default_rng([seed, 6])
    T1 = teacher.standard_normal((50, 32)) / math.sqrt(50)
    T2 = teacher.standard_normal(32)
    rng = np.random.default_rng([seed, 8])
    X = rng.standard_normal((n, 50))
    y = np.tanh(X @ T1) @ T2
    y = y + 0.1 * y.std() * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    return X.astype(DTYPE), y.astype(DTYPE)


GENERATORS = {"blobs": blobs, "quantiles": quantiles, "mnist_like": mnist_like,
              "tabular": tabular}


@functools.lru_cache(maxsize=4)
def _generate(kind, n_train, n_test, seed):
    # shared by every contender, which must not change it; left writable all
    # the same, as users' arrays are (fastnn copies a read-only X on every fit)
    X, y = GENERATORS[kind](n_train + n_test, seed)
    return Data(X[:n_train], y[:n_train], X[n_train:], y[n_train:])


# ------------------------------------------------------------------ score

def score(workload, out, y):
    """(loss, accuracy) of predictions ``out`` against ``y``, the same for every
    contender: mean cross-entropy and accuracy from class probabilities
    (multiclass: (n, k); binary: (n,) or (n, 2) probabilities of class 1), or
    (mean squared error, R^2) for regression."""
    out = np.asarray(out, dtype=np.float64)
    if workload.task == "regression":
        out = out.reshape(-1)
        y = np.asarray(y, dtype=np.float64)
        mse = float(np.mean((out - y) ** 2))
        return mse, 1.0 - mse / float(np.var(y))
    if workload.task == "binary":
        p = out[:, -1] if out.ndim == 2 else out
        p = np.clip(p, 1e-12, 1 - 1e-12)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
        return float(loss), float(np.mean((p >= 0.5) == (y == 1)))
    p = np.clip(out[np.arange(len(y)), y], 1e-12, None)
    return float(-np.mean(np.log(p))), float(np.mean(out.argmax(axis=1) == y))
