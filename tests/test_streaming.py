"""Data larger than memory: fit/predict/evaluate stream memory-mapped and
on-disk arrays in blocks (fastnn.data, fastnn.streaming) with bounded memory,
visit every row once per epoch, and match in-memory training where the
shuffles coincide."""

import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn
from fastnn import data as fdata
from fastnn import trainer


# ------------------------------------------------------------------ helpers
def blobs(n=3000, d=5, k=3, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + noise * rng.normal(size=(n, d))
    return X.astype(np.float32), y


def net(d=5, k=3, seed=1, hidden=8, loss="softmax_cross_entropy", lr=0.01, **kw):
    model = fnn.Sequential([fnn.Dense(hidden, activation="relu"), fnn.Dense(k)], input_dim=d,
                           seed=seed, **kw)
    model.compile(loss=loss, optimizer=fnn.Adam(lr=lr))
    return model


def on_disk(tmp_path, name, a):
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def snapshot(model):
    opt = model._opt_state
    return (model._params.tobytes(), model._state.tobytes(),
            tuple(opt[k].tobytes() for k in ("s1", "s2", "t")), model._epoch,
            None if model._classes is None else model._classes.tolist(), model._y_ndim,
            str(model._shuffle_rng.bit_generator.state), repr(model.optimizer))


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no RssAnon in /proc/self/status")


class PeakRss:
    """Peak RssAnon over the value at entry, sampled by a thread."""

    def __enter__(self):
        self.base = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.extra = max(self.peak, rss_anon()) - self.base
        return False


@pytest.fixture
def visits(monkeypatch):
    """Record the feature-0 value of every row each compiled call trains on,
    in training order (features carry their row number in column 0)."""
    seen = []
    real = trainer.train_batches

    def wrapped(X, T, sw, order, start, stop, batch_size, *rest):
        got = real(X, T, sw, order, start, stop, batch_size, *rest)
        seen.append(X[order[start:min(stop, start + got * batch_size)], 0].astype(np.int64))
        return got
    monkeypatch.setattr(trainer, "train_batches", wrapped)
    return seen


# ------------------------------------------------------------------ sources
def test_what_is_streamed(tmp_path):
    X, _ = blobs(10)
    mm = on_disk(tmp_path, "X", X)
    assert fdata.is_streamed(mm) and fdata.is_streamed(mm[2:5]) and fdata.is_streamed(
        np.asarray(mm))
    assert fdata.is_streamed(str(tmp_path / "X.npy")) and fdata.is_streamed(tmp_path / "X.npy")
    assert not fdata.is_streamed(X) and not fdata.is_streamed(X.tolist())
    ro = X.copy()
    ro.flags.writeable = False
    assert not fdata.is_streamed(ro)
    src = fdata.RowSource(tmp_path / "X.npy")
    assert src.shape == X.shape and src.dtype == np.float32
    assert np.array_equal(src.rows(3, 8).read(1, 3), X[4:6])


def test_paths_and_bad_sources(tmp_path):
    X, y = blobs(200)
    np.save(tmp_path / "X.npy", X)
    model = net()
    model.fit(str(tmp_path / "X.npy"), y, epochs=1)
    with pytest.raises(TypeError, match="X"):
        net().fit(str(tmp_path / "X.csv"), y)
    with pytest.raises(ValueError, match="X"):
        net().fit(str(tmp_path / "missing.npy"), y)
    with pytest.raises(ValueError, match="X"):
        net().fit(on_disk(tmp_path, "X1", X[:, 0]), y)
    with pytest.raises(TypeError, match="X"):
        net().fit(on_disk(tmp_path, "Xs", X.astype(str)), y)
    with pytest.raises(ValueError, match="y"):
        net().fit(on_disk(tmp_path, "X2", X), y[:-1])
    with pytest.raises(ValueError, match="memory_budget"):
        net().fit(X, y, memory_budget=0)
    with pytest.raises(TypeError, match="window_blocks"):
        net().fit(X, y, window_blocks=2.5)


def test_iter_windows_gives_every_row_once(tmp_path):
    n = 1003
    X = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    passes = []
    for seed in (0, 0, 1):
        rows = [(xw, yw) for xw, yw in fdata.iter_windows(on_disk(tmp_path, "X", X), y,
                                                          seed=seed, block_rows=50,
                                                          window_blocks=3)]
        ids = np.concatenate([yw for _, yw in rows])
        assert np.array_equal(np.sort(ids), np.arange(n))
        assert all(np.array_equal(xw[:, 0], 2 * yw) for xw, yw in rows)
        assert max(len(yw) for _, yw in rows) <= 150
        passes.append(ids)
    assert np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[0], passes[2])


# ------------------------------------------------------------------ training
def test_one_window_is_exactly_the_in_memory_fit(tmp_path):
    X, y = blobs(1500)
    Xv, yv = blobs(300, seed=9)
    w = np.linspace(0.5, 1.5, len(y))
    kw = dict(epochs=3, batch_size=32, validation_data=(Xv, yv), sample_weight=w)
    a, b = net(), net()
    ha = a.fit(X, y, **kw)
    hb = b.fit(on_disk(tmp_path, "X", X), on_disk(tmp_path, "y", y), **kw)
    assert np.array_equal(a._params, b._params)
    assert ha.history == hb.history
    assert np.array_equal(ha.batch_losses, hb.batch_losses)
    assert snapshot(a) == snapshot(b)


def test_unshuffled_stream_is_the_in_memory_order_across_windows(tmp_path):
    X, y = blobs(2345)
    a, b = net(), net()
    ha = a.fit(X, y, epochs=2, batch_size=50, shuffle=False)
    hb = b.fit(on_disk(tmp_path, "X", X), y, epochs=2, batch_size=50, shuffle=False,
               block_rows=97, window_blocks=3)
    assert np.array_equal(a._params, b._params)
    assert np.array_equal(ha.batch_losses, hb.batch_losses)


@pytest.mark.parametrize("batch_size", [1, 32, 100])
def test_every_row_is_visited_once_per_epoch(tmp_path, visits, batch_size):
    n, block_rows, window_blocks = 2300, 90, 4
    X, y = blobs(n)
    X[:, 0] = np.arange(n)                      # row numbers, exact in float32
    model = net()
    hist = model.fit(on_disk(tmp_path, "X", X), y, epochs=3, batch_size=batch_size,
                     block_rows=block_rows, window_blocks=window_blocks)
    order = np.concatenate(visits)
    assert order.shape == (3 * n,)
    epochs = order.reshape(3, n)
    for e in range(3):
        assert np.array_equal(np.sort(epochs[e]), np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(n))
    n_batches = -(-n // batch_size)
    assert hist.batch_losses.shape == (3 * n_batches,)
    assert model._opt_state["t"][0] == 3 * n_batches
    # a batch mixes rows from the blocks of one window (plus rows carried over)
    if batch_size == 100:
        blocks_per_batch = [len(np.unique(b // block_rows)) for b in epochs[0].reshape(23, 100)]
        assert max(blocks_per_batch) <= 2 * window_blocks
        assert np.mean(blocks_per_batch) > 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), batch_size=st.integers(1, 50), block_rows=st.integers(1, 60),
       window_blocks=st.integers(1, 5), shuffle=st.booleans())
def test_any_layout_visits_every_row_once_in_full_batches(visits, n, batch_size, block_rows,
                                                          window_blocks, shuffle):
    X, y = blobs(n)
    X[:, 0] = np.arange(n)
    visits.clear()
    model = net()
    hist = model.fit(LazyRows(X), y, epochs=2, batch_size=batch_size, shuffle=shuffle,
                     block_rows=block_rows, window_blocks=window_blocks)
    order = np.concatenate(visits).reshape(2, n)
    assert all(np.array_equal(np.sort(o), np.arange(n)) for o in order)
    assert len(hist.batch_losses) == 2 * -(-n // batch_size)
    if not shuffle:
        assert np.array_equal(order[0], np.arange(n))
        ref = net()
        ref.fit(X, y, epochs=2, batch_size=batch_size, shuffle=False)
        assert np.array_equal(ref._params, model._params)


def test_windowed_shuffle_reaches_the_accuracy_of_a_full_shuffle(tmp_path):
    # rows sorted by label on disk: the hard case for a windowed shuffle (in
    # file order, 4 epochs of this reach only ~35% accuracy)
    X, y = blobs(32000, d=6, k=3, seed=3, noise=4.0)
    X, Xt, y, yt = X[:12000], X[12000:], y[:12000], y[12000:]
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    kw = dict(epochs=8, batch_size=32, lr_schedule=fnn.schedules.CosineDecay(8))
    full, windowed = net(d=6), net(d=6)
    full.fit(X, y, **kw)
    windowed.fit(on_disk(tmp_path, "X", X), on_disk(tmp_path, "y", y), block_rows=250,
                 window_blocks=6, **kw)                      # 48 blocks, 8 windows
    acc_full = full.evaluate(Xt, yt)["accuracy"]
    acc_windowed = windowed.evaluate(Xt, yt)["accuracy"]
    assert acc_full > 0.85
    assert abs(acc_full - acc_windowed) <= 0.005, (acc_full, acc_windowed)


def test_bounded_memory_and_exact_predictions_on_a_large_file(tmp_path, visits):
    """A 160 MB file trained and predicted with a 16 MiB budget: the extra
    anonymous memory stays far below the file size; every row is visited
    once; predictions equal those of the in-memory array bitwise."""
    n, d, chunk = 1_600_000, 25, 200_000
    path = tmp_path / "big.npy"
    rng = np.random.default_rng(0)
    w = rng.normal(size=d).astype(np.float32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        labels = []
        for a in range(0, n, chunk):
            Xc = rng.normal(size=(chunk, d)).astype(np.float32)
            Xc[:, 0] = np.arange(a, a + chunk)           # row numbers
            labels.append((Xc[:, 1:] @ w[1:] > 0).astype(np.int8))
            f.write(Xc.tobytes())
    y = np.concatenate(labels)
    np.save(tmp_path / "y.npy", y)
    del labels
    Xm, ym = np.load(path, mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    budget = 16 * 2 ** 20
    model = net(d=d, k=2, hidden=16)
    model.fit(Xm[:3000], ym[:3000], batch_size=256, memory_budget=budget)   # warm up
    model.predict(Xm[:3000])
    visits.clear()
    with PeakRss() as fit_mem:
        hist = model.fit(Xm, ym, batch_size=256, memory_budget=budget)
    rows = np.concatenate(visits)
    assert np.array_equal(np.sort(rows), np.arange(n))
    assert len(hist.batch_losses) == -(-n // 256)
    with PeakRss() as predict_mem:
        streamed = model.predict(Xm, memory_budget=budget)
    bound = 3 * budget + 8 * 2 ** 20                  # 56 MiB; the file is 160 MB
    assert bound < os.path.getsize(path) / 2
    assert fit_mem.extra < bound, fit_mem.extra
    assert predict_mem.extra < bound, predict_mem.extra
    with PeakRss() as copy_mem:                         # the sampler sees a whole copy
        X = np.array(Xm)
    assert copy_mem.extra > bound
    assert np.array_equal(streamed, model.predict(X))


def test_default_budget_never_reads_a_modest_file_whole(tmp_path):
    """With no memory_budget given, a 60 MB float64 file is streamed, not read
    whole: the peak of fit, predict and evaluate (tracemalloc: every NumPy
    allocation) stays within the budget plus the per-row results, under a
    third of the file."""
    import tracemalloc
    n, d = 300_000, 25
    X, y = blobs(n, d=d, k=3, seed=5)
    Xm = on_disk(tmp_path, "X", X.astype(np.float64))
    ym = on_disk(tmp_path, "y", y.astype(np.int8))
    size = Xm.nbytes
    assert size > 3 * fdata.DEFAULT_MEMORY_BUDGET
    model = net(d=d)
    model.fit(Xm[:2000], ym[:2000], batch_size=256)            # compile outside the count
    for call in (lambda: model.fit(Xm, ym, batch_size=256),
                 lambda: model.predict(Xm),
                 lambda: model.evaluate(Xm, ym)):
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < size / 3, (peak, size)
        assert peak < fdata.DEFAULT_MEMORY_BUDGET + 16 * n, peak      # + per-row results


def test_streamed_training_is_reproducible_and_resumes_after_save(tmp_path):
    X, y = blobs(3000)
    Xm = on_disk(tmp_path, "X", X)
    kw = dict(batch_size=24, block_rows=128, window_blocks=3)
    a, b = net(), net()
    a.fit(Xm, y, epochs=3, **kw)
    b.fit(Xm, y, epochs=1, **kw)
    b.save(tmp_path / "b.fnn")
    c = fnn.load(tmp_path / "b.fnn")
    c.fit(Xm, y, epochs=2, **kw)
    assert np.array_equal(a._params, c._params) and a._epoch == c._epoch == 3
    again = net()
    again.fit(Xm, y, epochs=3, **kw)
    assert np.array_equal(a._params, again._params)


# ------------------------------------------------------------------ inference
@pytest.mark.parametrize("hidden", [3, 40])               # feature-major loops, BLAS
@pytest.mark.parametrize("loss,k", [("softmax_cross_entropy", 3), ("binary_cross_entropy", 1),
                                    ("mse", 2)])
def test_streamed_inference_equals_in_memory_bitwise(tmp_path, hidden, loss, k):
    n, d = 5000 + 77, 6
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, d))
    y = {"softmax_cross_entropy": rng.integers(0, 3, n), "binary_cross_entropy":
         rng.integers(0, 2, n), "mse": rng.normal(size=(n, 2))}[loss]
    model = net(d=d, k=k, hidden=hidden, loss=loss)
    model.fit(X, y, epochs=1)
    Xm = on_disk(tmp_path, "X", X)                    # float64 on disk, float32 model
    budget = 40_000                                     # chunks of one predict block
    assert np.array_equal(model.predict(Xm, memory_budget=budget), model.predict(X))
    if loss != "mse":
        assert np.array_equal(model.predict_proba(Xm, memory_budget=budget),
                              model.predict_proba(X))
    sw = rng.uniform(0.5, 2.0, n)
    ev_mem = model.evaluate(X, y, sample_weight=sw)
    ev_stream = model.evaluate(Xm, on_disk(tmp_path, "y", y), sample_weight=sw,
                               memory_budget=budget)
    assert ev_stream.keys() == ev_mem.keys()
    for key in ev_mem:
        assert ev_stream[key] == pytest.approx(ev_mem[key], rel=1e-5)


def test_predict_checks_streamed_input(tmp_path):
    X, y = blobs(100)
    model = net()
    model.fit(X, y)
    with pytest.raises(ValueError, match="X"):
        model.predict(on_disk(tmp_path, "X", X[:, :4]))
    bad = X.copy()
    bad[70, 2] = np.nan
    with pytest.raises(ValueError, match="X"):
        model.predict(on_disk(tmp_path, "bad", bad))
    with pytest.raises(ValueError, match="compiled"):
        fnn.Sequential([fnn.Dense(2)]).predict(on_disk(tmp_path, "X2", X))


# ------------------------------------------------------------------ failure and safety
def test_bad_values_met_mid_fit_leave_the_model_as_it_was(tmp_path):
    X, y = blobs(3000)
    model = net()
    model.fit(X, y, epochs=1)
    before = snapshot(model)
    bad = X.copy()
    bad[2900, 1] = np.inf                           # in the last window
    with pytest.raises(ValueError, match="X"):
        model.fit(on_disk(tmp_path, "bad", bad), y, epochs=2, block_rows=100, window_blocks=2)
    assert snapshot(model) == before
    big = X.astype(np.float64)
    big[1234, 0] = 1e300                           # too large for float32
    with pytest.raises(ValueError, match="too large"):
        model.fit(on_disk(tmp_path, "big", big), y, block_rows=100, window_blocks=2)
    assert snapshot(model) == before
    # labels are all checked before training starts
    with pytest.raises(ValueError, match="y"):
        model.fit(on_disk(tmp_path, "X", X), on_disk(tmp_path, "y", np.r_[y[:-1], 7]),
                  block_rows=100, window_blocks=2)
    assert snapshot(model) == before
    # a fresh model is left unbuilt
    fresh = fnn.Sequential([fnn.Dense(4), fnn.Dense(3)], seed=0).compile()
    with pytest.raises(ValueError, match="X"):
        fresh.fit(on_disk(tmp_path, "bad2", bad), y, block_rows=100, window_blocks=2)
    assert not fresh._built and fresh.input_dim is None


def test_divergence_in_a_later_window_stops_as_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 4))
    X[2100:2300] *= 1e4                       # window 5 of 10 (rows 2000-2399)
    y = X @ rng.normal(size=(4, 1))

    def make():
        model = fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.BatchNorm(),
                                fnn.Dense(1)], input_dim=4, seed=0)
        return model.compile(loss="mse", optimizer=fnn.SGD(lr=0.05))
    a, b = make(), make()
    with pytest.warns(RuntimeWarning, match="loss became"):
        ha = a.fit(X, y, epochs=3, batch_size=16, shuffle=False)
    with pytest.warns(RuntimeWarning, match="loss became"):
        hb = b.fit(on_disk(tmp_path, "X", X), on_disk(tmp_path, "y", y), epochs=3,
                   batch_size=16, shuffle=False, block_rows=200, window_blocks=2)
    assert hb.stop_reason == ha.stop_reason and "batch 134" in hb.stop_reason
    assert np.isfinite(b._params).all() and np.isfinite(b._state).all()
    # the replay of the window leaves bitwise the in-memory weights and statistics
    assert snapshot(a) == snapshot(b)
    assert np.array_equal(ha.batch_losses, hb.batch_losses, equal_nan=True)


def test_ctrl_c_stops_a_streamed_fit_after_the_current_slice(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_FLOPS_PER_CALL", 1)      # one batch per compiled call
    real = trainer.train_batches
    calls = [0]

    def wrapped(*args):
        got = real(*args)
        calls[0] += 1
        if calls[0] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return got
    monkeypatch.setattr(trainer, "train_batches", wrapped)
    X, y = blobs(1000)
    model = net()
    hist = model.fit(on_disk(tmp_path, "X", X), y, epochs=2, batch_size=16, block_rows=100,
                     window_blocks=2)
    assert hist.stop_reason.startswith("interrupted")
    assert model._opt_state["t"][0] == 7 and len(hist.batch_losses) == 7
    assert model._epoch == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------ options
def test_validation_split_and_class_weight_stream_like_in_memory(tmp_path):
    X, y = blobs(1200)
    labels = np.array(["a", "b", "c"])[y]
    kw = dict(epochs=2, batch_size=16, validation_split=0.25, class_weight="balanced")
    a, b = net(), net()
    ha = a.fit(X, labels, **kw)
    hb = b.fit(on_disk(tmp_path, "X", X), labels, **kw)
    assert np.array_equal(a._params, b._params) and ha.history == hb.history
    c = net()
    hc = c.fit(on_disk(tmp_path, "X", X), labels, block_rows=64, window_blocks=3,
               validation_data=(on_disk(tmp_path, "Xv", X[:300]), labels[:300]),
               class_weight={"a": 2.0}, epochs=2)
    assert hc.history["val_accuracy"][-1] == c.evaluate(X[:300], labels[:300])["accuracy"]
    assert hc.history["val_loss"][-1] == pytest.approx(c.evaluate(X[:300], labels[:300])["loss"],
                                                       rel=1e-5)
    assert list(c._classes) == ["a", "b", "c"]


def test_verbose_progress_counts_rows(tmp_path, capsys):
    X, y = blobs(2000)
    model = net()
    model.fit(on_disk(tmp_path, "X", X), y, epochs=1, verbose=1, block_rows=100,
              window_blocks=2)
    err = capsys.readouterr().err
    assert "2.00k/2.00k" in err or "2000/2000" in err, err[-300:]


# ------------------------------------------------------------------ partial_fit
def test_partial_fit_is_one_pass_that_is_not_an_epoch(tmp_path):
    X, y = blobs(1000)
    a, b = net(), net()
    a.fit(X, y, epochs=1, batch_size=20)
    hist = b.partial_fit(X, y, batch_size=20)
    assert np.array_equal(a._params, b._params)       # same pass, same RNG draws
    assert a._epoch == 1 and b._epoch == 0
    assert hist.epoch == [0] and len(hist.batch_losses) == 50
    b.partial_fit(on_disk(tmp_path, "X", X[:300]), y[:300], batch_size=20)
    assert b._opt_state["t"][0] == 50 + 15 and b._epoch == 0


def test_partial_fit_classes(tmp_path):
    X, y = blobs(600)
    labels = np.array(["x", "y", "z"])[y]
    model = net()
    first = labels != "z"
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X[first], labels[first])
    model.partial_fit(X[first], labels[first], classes=["x", "y", "z"])
    assert list(model._classes) == ["x", "y", "z"]
    model.partial_fit(X[~first], labels[~first])
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, labels, classes=["x", "y", "w"])
    with pytest.raises(ValueError, match="classes"):
        net(k=1, loss="mse").partial_fit(X, X[:, 0], classes=[0, 1])


def test_user_loop_over_windows_with_partial_fit(tmp_path):
    X, y = blobs(3000)
    model = net()
    for _ in range(3):
        for Xw, yw in fdata.iter_windows(on_disk(tmp_path, "X", X), y, seed=0, block_rows=200,
                                         window_blocks=3):
            model.partial_fit(Xw, yw)
    assert model.evaluate(X, y)["accuracy"] > 0.9


# ------------------------------------------------------------------ other sources
class LazyRows:
    """A minimal on-demand array: shape, dtype and row slicing only."""

    def __init__(self, a):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self.a[key].copy()


def test_any_sliceable_array_is_streamed():
    X, y = blobs(900)
    lazy = LazyRows(X)
    a, b = net(), net()
    a.fit(X, y, epochs=2, shuffle=False)
    b.fit(lazy, LazyRows(y), epochs=2, shuffle=False, block_rows=100, window_blocks=2)
    assert np.array_equal(a._params, b._params) and lazy.reads >= 18
    assert np.array_equal(b.predict(lazy), b.predict(X))


def test_h5py_dataset(tmp_path):
    h5py = pytest.importorskip("h5py")
    X, y = blobs(800)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"], f["y"] = X, y
    with h5py.File(tmp_path / "d.h5", "r") as f:
        a, b = net(), net()
        a.fit(X, y, epochs=1)
        b.fit(f["X"], f["y"], epochs=1)
        assert np.array_equal(a._params, b._params)
        assert np.array_equal(b.predict(f["X"]), b.predict(X))


def test_estimator_partial_fit_takes_a_streamed_x_window_by_window(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    X, y = blobs(3000)
    Xm = on_disk(tmp_path, "X", X)
    monkeypatch.setattr(fdata, "DEFAULT_MEMORY_BUDGET", 2 ** 15)     # windows of ~400 rows
    assert Xm.nbytes > fdata.DEFAULT_MEMORY_BUDGET
    windows = len(list(fdata.iter_windows(Xm, y)))
    assert windows == 8
    clf = fnn.MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(10):
        clf.partial_fit(Xm, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 10 * windows
    assert clf.t_ == 10 * 3000 and clf.score(X, y) > 0.9
    reg = fnn.MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    target = X[:, 0] - X[:, 1]
    reg.partial_fit(Xm, target)
    assert len(reg.loss_curve_) == len(list(fdata.iter_windows(Xm, target))) > 1
    assert reg.t_ == 3000
    with pytest.raises(ValueError):
        clf.partial_fit(on_disk(tmp_path, "X4", X[:, :4]), y)
    assert clf.t_ == 10 * 3000                      # a failed call changes nothing


def test_estimator_partial_fit_reads_a_memory_map_that_fits_whole(tmp_path):
    """A memory map within the budget (joblib hands its workers one for every
    array over 1 MB) is one partial_fit epoch, exactly as in memory."""
    pytest.importorskip("sklearn")
    X, y = blobs(3000)
    Xm = on_disk(tmp_path, "X", X)
    assert Xm.nbytes <= fdata.DEFAULT_MEMORY_BUDGET
    a = fnn.MLPClassifier(hidden_layer_sizes=(16,), random_state=0, dtype="float64")
    b = fnn.MLPClassifier(hidden_layer_sizes=(16,), random_state=0, dtype="float64")
    for _ in range(3):
        a.partial_fit(X, y, classes=[0, 1, 2])
        b.partial_fit(Xm, y, classes=[0, 1, 2])
    assert a.loss_curve_ == b.loss_curve_ and len(b.loss_curve_) == 3
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(wa, wb)


def test_dask_ml_incremental():
    dask_ml = pytest.importorskip("dask_ml.wrappers")
    da = pytest.importorskip("dask.array")
    X, y = blobs(2000)
    dX, dy = da.from_array(X, chunks=500), da.from_array(y, chunks=500)
    inc = dask_ml.Incremental(fnn.MLPClassifier(hidden_layer_sizes=(16,), random_state=0),
                              scoring="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5):
            inc.partial_fit(dX, dy, classes=[0, 1, 2])
    assert inc.score(dX, dy) > 0.9
