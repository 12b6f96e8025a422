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
fnn.set_num_threads(int(sys.argv[1]))
dtype, chunked = sys.argv[2], sys.argv[3] in ("chunked", "columns")
if sys.argv[3] == "columns":                    # first layer transposed: split by columns
    fnn.model.TRANSPOSE_MIN_WEIGHTS = 1
rng = np.random.default_rng(0)
X = rng.normal(size=(1500, 96)).astype(dtype)
y = (X[:, :3].sum(1) > 0).astype(int) + (X[:, 3] > 0)
norm = [fnn.Dropout(0.1)] if chunked else [fnn.BatchNorm(), fnn.Dropout(0.1)]
m = fnn.Sequential([fnn.Dense(160, activation="relu"), *norm,
                    fnn.Dense(64, activation="tanh"), fnn.Dense(3)], dtype=dtype, seed=3)
m.compile("softmax_cross_entropy", fnn.Adam(1e-3), l2=1e-4)
m.fit(X, y, batch_size=256 if chunked else 128, epochs=2,
      sample_weight=rng.uniform(0.5, 2.0, 1500))
assert m._use_blas.any()
assert (m._buffers.n_chunks > 1) == chunked, m._buffers.n_chunks
assert (m._buffers.col_parts > 0) == (sys.argv[3] == "columns"), m._buffers.col_parts
p = m.predict_proba(X)
print(json.dumps([hashlib.sha256(m.get_weights().tobytes()).hexdigest(),
                  hashlib.sha256(p.tobytes()).hexdigest()]))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batches", ["whole", "chunked", "columns"])
def test_bitwise_identical_with_one_and_two_threads(dtype, batches):
    """Whole batches (BatchNorm), batches split into row chunks that run on
    Numba's thread pool, and the first layer split by columns
    (``kernels/colsplit.py``): the same bits on 1, 2 and 3 threads."""
    outs = []
    for threads in (1, 2, 3):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), dtype, batches],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1] == outs[2]


def _chunked_fit(n_chunks=None, threads=None, dtype="float64", seed=0, batch_size=256,
                 n=1100):
    """A Dense/Dropout network fitted 2 epochs with sample weights and l2;
    ``n_chunks`` overrides the model's plan."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 40))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    m = fnn.Sequential([fnn.Dense(96, activation="tanh"), fnn.Dropout(0.2),
                        fnn.Dense(48, activation="relu"), fnn.Dense(3)], dtype=dtype, seed=seed)
    m.compile("softmax_cross_entropy", fnn.Adam(1e-2), l2=1e-3)
    if n_chunks is not None:
        m._chunks = lambda batch_size: n_chunks
    fnn.set_num_threads(threads)
    try:
        h = m.fit(X, y, batch_size=batch_size, epochs=2, sample_weight=rng.uniform(0.5, 2, n))
    finally:
        fnn.set_num_threads(None)
    return m, h


def test_chunk_plan_depends_on_the_batch_not_the_threads():
    m, _ = _chunked_fit()
    assert m._chunks(256) == 4 and m._chunks(128) == 2 and m._chunks(100) == 1
    assert m._buffers.n_chunks == 4
    bn = fnn.Sequential([fnn.Dense(96), fnn.BatchNorm(), fnn.Dense(3)], input_dim=40)
    assert bn._chunks(4096) == 1                 # BatchNorm needs whole batches
    tiny = fnn.Sequential([fnn.Dense(3, activation="tanh"), fnn.Dense(3)], input_dim=2)
    assert tiny._chunks(4096) == 1               # too little work per chunk


@pytest.mark.parametrize("n_chunks, batch_size, n", [(2, 256, 1100), (4, 256, 1100),
                                                     (4, 256, 296), (2, 200, 1347),
                                                     (2, 32, 300), (4, 64, 250)])
def test_chunked_batches_match_whole_batches(n_chunks, batch_size, n):
    """Row chunks compute the same maths as the whole batch (gradients summed
    in another order, so equal to rounding); Dropout draws the same mask.
    Smaller last batches (40 rows of 296, 26 of 250) take fewer chunks, and
    no chunk outgrows its workspace, even with plans finer than the model's."""
    whole, hw = _chunked_fit(n_chunks=1, batch_size=batch_size, n=n)
    chunked, hc = _chunked_fit(n_chunks=n_chunks, batch_size=batch_size, n=n)
    np.testing.assert_allclose(chunked.get_weights(), whole.get_weights(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(hc.batch_losses, hw.batch_losses, rtol=1e-13)
    assert hc.history["accuracy"] == hw.history["accuracy"]


def test_chunked_serial_and_parallel_paths_are_bitwise_equal():
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)                 # a user's own setting, left as found
    try:
        one, h1 = _chunked_fit(threads=1, dtype="float32")      # plain loop
        two, h2 = _chunked_fit(threads=2, dtype="float32")      # Numba's pool, 2 threads
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
    assert one.get_weights().tobytes() == two.get_weights().tobytes()
    assert h1.batch_losses.tobytes() == h2.batch_losses.tobytes()


def _needs_two_numba_threads():
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba runs one thread here")


@pytest.mark.parametrize("split", ["rows", "columns"])
def test_workers_match_the_fork_join_and_the_loop(monkeypatch, split):
    """The passes run by workers staying in one parallel region
    (``chunked.train_workers``, ``colsplit.train_colsplit_workers``: barriers
    between passes), by a fork-join per pass, and by a plain loop: the same
    bits, smaller last batch included, with batches split into row chunks or
    the first layer into runs of columns."""
    _needs_two_numba_threads()
    from fastnn import threads, trainer
    batch_size = 256
    if split == "columns":
        monkeypatch.setattr(fnn.model, "TRANSPOSE_MIN_WEIGHTS", 1)
        batch_size = 128
    checked = []
    monkeypatch.setattr(trainer, "record_check_in", lambda ok: checked.append(ok))
    workers, hw = _chunked_fit(threads=2, dtype="float32", batch_size=batch_size)
    assert (workers._buffers.col_parts > 0) == (split == "columns")
    assert checked and all(checked)                       # the workers ran every call
    tried = len(checked)
    monkeypatch.setattr(trainer, "workers_usable", lambda: False)
    forkjoin, hf = _chunked_fit(threads=2, dtype="float32", batch_size=batch_size)
    loop, hl = _chunked_fit(threads=1, dtype="float32", batch_size=batch_size)
    assert len(checked) == tried                          # neither tried the workers
    for m, h in ((forkjoin, hf), (loop, hl)):
        assert m.get_weights().tobytes() == workers.get_weights().tobytes()
        assert h.batch_losses.tobytes() == hw.batch_losses.tobytes()
        assert h.history == hw.history
    assert threads.workers_usable()


@pytest.mark.parametrize("split", ["rows", "columns"])
def test_workers_that_cannot_all_run_change_nothing(monkeypatch, split):
    """More workers than threads: one thread would run two workers in turn,
    so a barrier could never open. The check-in gives up (every worker
    alike, nothing touched), the call runs as a fork-join, and the fit ends
    with the same bits; after MAX_CHECK_IN_FAILURES such calls in a row the
    workers are no longer tried."""
    _needs_two_numba_threads()
    import numba

    from fastnn import threads, trainer
    name = "train_workers" if split == "rows" else "train_colsplit_workers"
    real = getattr(trainer, name)
    batch_size = 256
    if split == "columns":
        monkeypatch.setattr(fnn.model, "TRANSPOSE_MIN_WEIGHTS", 1)
        batch_size = 128
    results = []

    def too_many(n_workers, max_spins, *args):
        assert n_workers == numba.get_num_threads() == 2
        results.append(real(n_workers + 1, np.int64(20_000), *args))
        return results[-1]

    expected, he = _chunked_fit(threads=2, dtype="float32", batch_size=batch_size)
    assert (expected._buffers.col_parts > 0) == (split == "columns")
    monkeypatch.setattr(threads, "_check_in_failures", 0)
    monkeypatch.setattr(trainer, name, too_many)
    for _ in range(threads.MAX_CHECK_IN_FAILURES):           # at least one call each
        got, hg = _chunked_fit(threads=2, dtype="float32", batch_size=batch_size)
        assert got.get_weights().tobytes() == expected.get_weights().tobytes()
        assert hg.batch_losses.tobytes() == he.batch_losses.tobytes()
    assert set(results) == {-1}
    assert len(results) == threads.MAX_CHECK_IN_FAILURES
    assert not threads.workers_usable()
    again, _ = _chunked_fit(threads=2, dtype="float32", batch_size=batch_size)
    assert len(results) == threads.MAX_CHECK_IN_FAILURES          # not tried again
    assert again.get_weights().tobytes() == expected.get_weights().tobytes()
    threads.record_check_in(True)
    assert threads.workers_usable()


def test_workers_stop_together_at_a_non_finite_loss(monkeypatch):
    """A loss that overflows mid-call: every worker sees it (each sums the
    chunks' shares), so all leave at that batch, its update not applied; the
    same stop, weights and losses as the loop's."""
    _needs_two_numba_threads()
    from fastnn import trainer
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 40)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)

    def fit(threads):
        m = fnn.Sequential([fnn.Dense(128, activation="relu"), fnn.Dense(64, activation="relu"),
                            fnn.Dense(2)], input_dim=40, seed=0)
        m.compile("softmax_cross_entropy", fnn.SGD(lr=1e3, momentum=0.9))
        fnn.set_num_threads(threads)
        try:
            with pytest.warns(RuntimeWarning, match="loss became nan at epoch 0, batch 6"):
                h = m.fit(X, y, batch_size=256, epochs=3)
        finally:
            fnn.set_num_threads(None)
        assert m._buffers.n_chunks > 1
        return m, h

    checked = []
    monkeypatch.setattr(trainer, "record_check_in", lambda ok: checked.append(ok))
    two, h2 = fit(2)
    assert checked and all(checked)
    one, h1 = fit(1)
    assert np.isfinite(two.get_weights()).all()
    assert two.get_weights().tobytes() == one.get_weights().tobytes()
    assert h2.batch_losses.tobytes() == h1.batch_losses.tobytes()
    assert not np.isfinite(h2.batch_losses[-1])


def test_chunked_training_from_concurrent_python_threads():
    """Numba's pool serves one Python thread at a time (the other runs the
    same chunks in a plain loop): no crash, the same bits as alone."""
    from concurrent.futures import ThreadPoolExecutor
    alone = _chunked_fit(dtype="float32")[0].get_weights()
    with ThreadPoolExecutor(3) as ex:
        got = list(ex.map(lambda _: _chunked_fit(dtype="float32")[0].get_weights(), range(3)))
    for w in got:
        assert w.tobytes() == alone.tobytes()


FORK = r"""
import multiprocessing as mp, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_threads import _chunked_fit

def child(q):
    q.put(_chunked_fit(dtype="float32")[0].get_weights().tobytes())

if __name__ == "__main__":
    parent = _chunked_fit(dtype="float32")[0].get_weights().tobytes()   # uses the pool
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    got = q.get(timeout=300)
    p.join(60)
    assert p.exitcode == 0 and got == parent
    print("ok")
"""


def test_chunked_training_in_a_forked_child():
    """GNU OpenMP is not fork-safe: a child forked after the parent used the
    pool trains with plain loops, to the same bits."""
    import os
    r = subprocess.run([sys.executable, "-c", FORK, os.path.dirname(__file__)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


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
            X = rng.normal(size=(300, 3))
            m = fnn.Sequential(layers, dtype=dtype, seed=0)
            m.compile("softmax_cross_entropy", fnn.Adam(), l2=0.1)
            for bs in (7, 256):                 # whole batches; row chunks (no BatchNorm)
                m.fit(X, rng.integers(0, m.n_outputs, 300), batch_size=bs, epochs=1,
                      sample_weight=np.ones(300), validation_data=(X, rng.integers(0, 2, 300)))
            m.predict_proba(X.astype(np.float32))
        wide = fnn.Sequential([fnn.Dense(256, activation="relu"), fnn.Dense(3)], dtype=dtype,
                              seed=0)      # transposed first layer: split by columns
        wide.compile("softmax_cross_entropy", fnn.Adam(), l2=0.1)
        Xw = rng.normal(size=(300, 256))
        wide.fit(Xw, rng.integers(0, 3, 300), batch_size=128, epochs=1, sample_weight=np.ones(300))
        assert wide._buffers.col_parts == 2
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
X = rng.normal(size=(400, 3)).astype(np.float32)
y = rng.integers(0, 3, 400)
for layers, bs in (([fnn.Dense(4, activation="tanh"), fnn.BatchNorm(), fnn.Dropout(0.2),
                     fnn.Dense(3)], 16), ([fnn.Dense(70, activation="relu"), fnn.Dense(3)], 16),
                   ([fnn.Dense(300, activation="relu"), fnn.Dropout(0.2), fnn.Dense(3)], 256),
                   ([fnn.Dense(256, activation="relu"), fnn.Dense(3)], 128)):
    Xl = X if bs != 128 else rng.normal(size=(400, 256)).astype(np.float32)
    m = fnn.Sequential(layers, seed=0)
    m.compile("softmax_cross_entropy", fnn.Adam(), l2=0.01)
    m.fit(Xl, y, batch_size=bs, epochs=1, validation_data=(Xl, y), sample_weight=np.ones(400))
    m.predict(Xl)
    m.evaluate(Xl, y)
assert m._buffers.col_parts == 2                # the last: first layer split by columns
import warnings
warnings.simplefilter("ignore")
X2 = rng.normal(size=(1100, 3))                 # 3 blocks of the L-BFGS pass: 3 groups
y2 = (X2[:, 0] > 0).astype(int)
lb = fnn.MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X2, y2)
ad = fnn.MLPClassifier(max_iter=2, batch_size=256, alpha=0.01, random_state=0).fit(X2, y2)
import hashlib
h = hashlib.sha256(m.get_weights().tobytes())
for W in lb.coefs_ + ad.coefs_:
    h.update(W.tobytes())
print("weights", h.hexdigest())
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
    float32: literal arguments between kernels would each add a version.
    Then the same fits from that cache give the same bits as compiled fresh
    (a kernel inlined into a fresh caller and one linked from the cache were
    seen to fuse a masked multiply-add differently)."""
    import os
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = []
    for _ in ("fresh", "cached"):
        r = subprocess.run([sys.executable, "-c", SPECIALISATIONS], capture_output=True,
                           text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        runs.append([ln for ln in r.stdout.splitlines() if ln.startswith("weights")])
    assert runs[0] == runs[1] and runs[0]


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


def test_lbfgs_full_batch_groups_are_bitwise_equal_on_one_and_two_threads():
    """L-BFGS's full-batch pass runs fixed row groups in parallel (2,100 rows:
    5 blocks of 512, 5 groups); 1 and 2 threads give the same fit, bit for bit."""
    from sklearn.exceptions import ConvergenceWarning

    from fastnn import sklearn as fsk
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2100, 20))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    fits = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        try:
            with pytest.warns(ConvergenceWarning):
                e = fnn.MLPClassifier(hidden_layer_sizes=(40,), solver="lbfgs", max_iter=15,
                                      random_state=0).fit(X, y)
        finally:
            fnn.set_num_threads(None)
        fits.append(e)
    assert fsk._lbfgs_groups(fits[0]._net, 2100, 512) == 5
    assert fits[0].loss_ == fits[1].loss_
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        assert a.tobytes() == b.tobytes()


def test_path_chooser_follows_the_faster_path_and_rechecks():
    """The pool or the plain loop (same bits): the pool first, the loop tried
    once early and then ever more rarely while it loses; when
    the pool slows down the loop is timed at once and takes over; when the
    pool is fast again a try finds it."""
    from fastnn.threads import PathChooser
    ch = PathChooser()
    speed = {True: 1.0, False: 2.0}             # seconds per call; pool faster

    def call():
        p = ch.choose()
        ch.record(p, speed[p], 1)
        return p

    runs = [call() for _ in range(PathChooser.PROBE_EVERY)]
    assert runs.count(False) == 1                       # one early try, lost
    assert runs[:1 + PathChooser.SAMPLES] == [True] * (1 + PathChooser.SAMPLES)
    runs = [call() for _ in range(2000)]
    assert 1 <= runs.count(False) <= 2                  # lost by 2x: tries every 1024 calls
    speed[True] = 5.0                                   # the machine got busy
    after = [call() for _ in range(3 * PathChooser.SAMPLES + 3)]
    assert after[-3:] == [False] * 3
    speed[True] = 1.0                                   # and free again
    back = [call() for _ in range(2 * PathChooser.PROBE_EVERY + 2 * PathChooser.SAMPLES)]
    assert back[-3:] == [True] * 3


def _clocked_chooser(monkeypatch):
    """A PathChooser on a fake clock, and a call(speed) that runs one call."""
    from types import SimpleNamespace

    from fastnn import threads
    clock = [100.0]
    monkeypatch.setattr(threads, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    ch = threads.PathChooser()
    ch.begin()

    def call(speed):
        p = ch.choose()
        clock[0] += speed[p]
        ch.record(p, speed[p], 1)
        return p
    return ch, call, clock


def test_path_chooser_times_again_a_loop_chosen_in_a_fits_first_moments(monkeypatch):
    """Other libraries' threads spin for a while after their parallel calls
    and slow the pool: a loop chosen from the first SETTLE_S of a fit is
    timed again after it, and the pool, fast by then, takes over."""
    ch, call, clock = _clocked_chooser(monkeypatch)
    speed = {True: 0.015, False: 0.01}          # a spinning neighbour slows the pool
    first = [call(speed) for _ in range(8)]
    assert clock[0] - 100.0 < ch.SETTLE_S and first[-3:] == [False] * 3
    speed[True] = 0.005                         # the neighbour sleeps
    after = [call(speed) for _ in range(14)]
    assert after[-3:] == [True] * 3
    # a pool that stays slow (a busy core) keeps the loop after one try of the pool
    ch, call, clock = _clocked_chooser(monkeypatch)
    speed = {True: 0.015, False: 0.01}
    runs = [call(speed) for _ in range(30)]
    assert runs[-8:] == [False] * 8 and runs[8:].count(True) <= 2


def test_path_chooser_quiet_start_costs_no_extra_try(monkeypatch):
    ch, call, clock = _clocked_chooser(monkeypatch)
    speed = {True: 0.005, False: 0.01}
    runs = [call(speed) for _ in range(ch.PROBE_EVERY)]
    assert runs.count(False) == 1


def test_path_chooser_keeps_trying_a_loop_that_loses_narrowly():
    """A loop 1.2x slower than the pool (less than SLOWDOWN) is tried at
    doubling intervals, 32, 64, ... calls, not at the longest one at once."""
    from fastnn.threads import PathChooser
    ch = PathChooser()
    speed = {True: 1.0, False: 1.2}
    runs = []
    for _ in range(2000):
        p = ch.choose()
        ch.record(p, speed[p], 1)
        runs.append(p)
    assert all(runs[:1 + PathChooser.SAMPLES])
    assert 4 <= runs.count(False) <= 8


def test_path_chooser_returns_to_the_pool_soon_after_a_busy_spell(monkeypatch):
    """A long spell with the second core busy puts the loop in use and its
    count-based tries of the pool far apart; once the core is free the pool
    is back within a fraction of a second, not a thousand calls later."""
    ch, call, clock = _clocked_chooser(monkeypatch)
    speed = {True: 0.001, False: 0.0016}
    [call(speed) for _ in range(50)]
    speed[True] = 0.0032                        # busy spell: pool twice the loop's time
    spell = [call(speed) for _ in range(3000)]
    assert spell[-10:] == [False] * 10
    assert spell[100:].count(True) <= 3000 * 0.0016 / ch.POOL_RETRY_S + 5
    speed[True] = 0.001                         # free again
    t0 = clock[0]
    after = [call(speed) for _ in range(600)]
    back = next(i for i in range(len(after)) if after[i:i + 10] == [True] * 10)
    assert clock[0] > t0 and back * 0.0016 <= 2 * ch.POOL_RETRY_S


def test_path_chooser_tries_a_very_slow_pool_rarely(monkeypatch):
    """The clock's tries of the pool come no sooner than POOL_RETRY_COST
    times as long as the last try took (a pool stalled by hand-offs costs at
    most about 5% more than the tries counted in calls, at doubling
    intervals up to MAX_PROBE_EVERY calls)."""
    ch, call, clock = _clocked_chooser(monkeypatch)
    speed = {True: 0.001, False: 0.002}
    [call(speed) for _ in range(20)]
    speed[True] = 0.1                           # every hand-off waits a time slice
    runs = [call(speed) for _ in range(1000)]
    t0 = clock[0]
    runs = [call(speed) for _ in range(6000)]
    counted = 6000 // ch.MAX_PROBE_EVERY + 1
    by_clock = (clock[0] - t0) / (ch.POOL_RETRY_COST * speed[True]) + 1
    assert runs[-5:] == [False] * 5 and runs.count(True) <= counted + by_clock
