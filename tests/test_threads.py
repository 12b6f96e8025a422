"""Same seed, same weights, bitwise, whatever the number of threads; and the
kernels compile to one signature per dtype."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn

SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import fastnn as fnn
from fastnn import model as model_mod
fnn.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
X = rng.normal(size=(1500, 96)).astype(sys.argv[2])
y = (X[:, :3].sum(1) > 0).astype(int) + (X[:, 3] > 0)
m = fnn.Sequential([fnn.Dense(160, activation="relu"), fnn.BatchNorm(), fnn.Dropout(0.1),
                    fnn.Dense(64, activation="tanh"), fnn.Dense(3)], dtype=sys.argv[2], seed=3)
m.compile("softmax_cross_entropy", fnn.Adam(1e-3), l2=1e-4)
m.fit(X, y, batch_size=128, epochs=2)
assert m._use_blas.any()
p = m.predict_proba(X)
print(json.dumps([hashlib.sha256(m.get_weights().tobytes()).hexdigest(),
                  hashlib.sha256(p.tobytes()).hexdigest()]))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bitwise_identical_with_one_and_two_threads(dtype):
    outs = []
    for threads in (1, 2, 1):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), dtype],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1] == outs[2]


def test_set_num_threads_validates_and_restores():
    from threadpoolctl import threadpool_info
    X0 = np.random.default_rng(0).normal(size=(300, 80)).astype(np.float32)
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    with pytest.raises(ValueError, match="n"):
        fnn.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        fnn.set_num_threads(1.5)
    fnn.set_num_threads(1)
    try:
        X = X0
        m = fnn.Sequential([fnn.Dense(64, activation="relu"), fnn.Dense(2)], seed=0)
        m.compile("softmax_cross_entropy")
        m.fit(X, (X[:, 0] > 0).astype(int), epochs=1)
        assert fnn.get_num_threads() == 1
    finally:
        fnn.set_num_threads(None)
    after = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    assert {k: after[k] for k in before} == before


def test_one_signature_per_dtype():
    from fastnn.kernels import KERNELS
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        for layers in ([fnn.Dense(4, activation="tanh"), fnn.BatchNorm(), fnn.Dropout(0.2),
                        fnn.Dense(2)], [fnn.Dense(70, activation="relu"), fnn.Dense(70),
                                        fnn.Dense(3)]):
            X = rng.normal(size=(50, 3))
            m = fnn.Sequential(layers, dtype=dtype, seed=0)
            m.compile("softmax_cross_entropy", fnn.Adam(), l2=0.1)
            m.fit(X, rng.integers(0, m.n_outputs, 50), batch_size=7, epochs=1,
                  sample_weight=np.ones(50), validation_data=(X, rng.integers(0, 2, 50)))
            m.predict_proba(X.astype(np.float32))
    for k in KERNELS:
        sigs = k.signatures
        assert len(sigs) <= 2, (k.__name__, sigs)
        dtypes = [str(s) for s in sigs]
        assert len(set(dtypes)) == len(dtypes)


def test_kernels_are_cached():
    from fastnn.kernels import KERNELS
    for k in KERNELS:
        assert k._cache.__class__.__name__ == "FunctionCache", k.__name__


SPECIALISATIONS = r"""
import sys
import numpy as np
from numba.core.registry import CPUDispatcher
import fastnn as fnn
rng = np.random.default_rng(0)
X = rng.normal(size=(100, 3)).astype(np.float32)
y = rng.integers(0, 3, 100)
for layers in ([fnn.Dense(4, activation="tanh"), fnn.BatchNorm(), fnn.Dropout(0.2),
                fnn.Dense(3)], [fnn.Dense(70, activation="relu"), fnn.Dense(3)]):
    m = fnn.Sequential(layers, seed=0)
    m.compile("softmax_cross_entropy", fnn.Adam(), l2=0.01)
    m.fit(X, y, batch_size=16, epochs=1, validation_data=(X, y), sample_weight=np.ones(100))
    m.predict(X)
    m.evaluate(X, y)
extra = []
for name, mod in list(sys.modules.items()):
    if name.startswith("fastnn.kernels."):
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == name \
                    and len(obj.overloads) > 1:
                extra.append(f"{name}.{obj.__name__}: {list(obj.overloads)}")
print("\n".join(extra))
sys.exit(1 if extra else 0)
"""


def test_no_kernel_compiles_twice_for_one_dtype(tmp_path):
    """From an empty cache, every kernel (callees included) compiles once for
    float32: literal arguments between kernels would each add a version."""
    import os
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", SPECIALISATIONS], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cache_guard_drops_stale_numba_cache(tmp_path, monkeypatch):
    """Numba's cache does not notice a changed callee in another file; the guard
    drops fastnn's cache files whenever any kernel source changes."""
    from fastnn.kernels import _cache_guard as g
    src = tmp_path / "k.py"
    src.write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    monkeypatch.setattr(g, "_HERE", str(tmp_path))
    monkeypatch.setattr(g, "_CACHE", str(cache))
    monkeypatch.setattr(g, "_STAMP", str(cache / "stamp"))
    g.check()
    (cache / "k.f-1.py311.nbi").write_text("stale")
    g.check()                                    # unchanged sources: kept
    assert (cache / "k.f-1.py311.nbi").exists()
    src.write_text("x = 2\n")
    g.check()                                    # changed: dropped
    assert not (cache / "k.f-1.py311.nbi").exists()


def test_parallel_inference_is_bitwise_identical():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 40)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    m = fnn.Sequential([fnn.Dense(64, activation="relu"), fnn.BatchNorm(), fnn.Dense(2)], seed=0)
    m.compile("softmax_cross_entropy", fnn.Adam(1e-2))
    m.fit(X, y, epochs=1, batch_size=256)
    outs = []
    try:
        for threads in (1, 2, 3):
            fnn.set_num_threads(threads)
            outs.append((m.predict_proba(X).tobytes(), m.evaluate(X, y)["loss"]))
    finally:
        fnn.set_num_threads(None)
    assert outs[0] == outs[1] == outs[2]
