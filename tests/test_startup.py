"""Start-up: a fresh process's first fit loads SciPy's cython_blas alone
(``fastnn/kernels/_blas_preload.py``), and scipy.linalg imported afterwards is
the whole package, its cython_blas the module Numba's products went through."""

import subprocess
import sys

CHILD = r"""
import sys
import numpy as np
import fastnn

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 20)).astype(np.float32)
y = rng.integers(0, 3, 256)
model = fastnn.Sequential([fastnn.Dense(64, activation="relu"),
                           fastnn.Dense(3, activation="softmax")], input_dim=20, seed=0)
model.compile(loss="softmax_cross_entropy", optimizer=fastnn.SGD(lr=0.05))
assert model._blas_layers(32).all()           # the fit's products go through np.dot
model.fit(X, y, batch_size=32, epochs=2, verbose=0)
assert "scipy.linalg" not in sys.modules, "the first fit imported all of scipy.linalg"
blas = sys.modules["scipy.linalg.cython_blas"]

# the products were right: the model's probabilities by hand
W1, b1 = model.layers[0].W, model.layers[0].b
W2, b2 = model.layers[1].W, model.layers[1].b
H = np.maximum(X.astype(np.float64) @ W1 + b1, 0.0)
Z = H @ W2 + b2
P = np.exp(Z - Z.max(axis=1, keepdims=True))
P /= P.sum(axis=1, keepdims=True)
assert np.allclose(model.predict_proba(X), P, atol=1e-5)

import scipy.linalg
assert scipy.linalg.cython_blas is blas
from scipy.linalg import cython_blas
assert cython_blas is blas
a = np.arange(6.0).reshape(2, 3)
assert np.allclose(scipy.linalg.blas.dgemm(1.0, a, a.T), a @ a.T)
assert np.allclose(scipy.linalg.solve(np.eye(3) * 2, np.ones(3)), 0.5)
assert not any(type(f).__name__ == "_LinkWhenParentImported" for f in sys.meta_path)
print("ok")
"""


def test_first_fit_loads_cython_blas_alone_and_scipy_linalg_stays_whole():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_nothing_is_preloaded_after_scipy_linalg():
    code = ("import sys, scipy.linalg; import fastnn; "
            "assert not any(type(f).__name__ == '_LinkWhenParentImported' "
            "for f in sys.meta_path); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
