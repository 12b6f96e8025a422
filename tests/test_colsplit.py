"""The first layer split by output columns (``kernels/colsplit.py``): the
same maths as row chunks and whole batches, the same bits on any number of
threads, and divergence handled as everywhere else."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import model as fmodel


@pytest.fixture
def wide_first(monkeypatch):
    """Every first Dense layer stored transposed (as a wide one is), so
    small test networks take the column split."""
    monkeypatch.setattr(fmodel, "TRANSPOSE_MIN_WEIGHTS", 1)


def _fit(split, monkeypatch, dtype="float64", batch_size=256, n=1100, threads=None,
         bias=True, dropout=0.2, opt=None, epochs=2, weighted=True):
    monkeypatch.setattr(fmodel, "COLUMN_SPLIT", split)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 40)).astype(dtype)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    sw = rng.uniform(0.5, 2, n) if weighted else None
    mid = [fnn.Dropout(dropout)] if dropout else []
    m = fnn.Sequential([fnn.Dense(128, activation="tanh", use_bias=bias), *mid,
                        fnn.Dense(48, activation="relu"), fnn.Dense(3)], dtype=dtype, seed=0)
    m.compile("softmax_cross_entropy", opt or fnn.Adam(1e-2), l2=1e-3)
    fnn.set_num_threads(threads)
    try:
        h = m.fit(X, y, batch_size=batch_size, epochs=epochs, sample_weight=sw)
    finally:
        fnn.set_num_threads(None)
    return m, h


def test_plan_takes_wide_first_layers_only():
    def net(n_in, widths, bn=False):
        layers = [fnn.Dense(w, activation="relu") for w in widths]
        if bn:
            layers.insert(1, fnn.BatchNorm())
        return fnn.Sequential([*layers, fnn.Dense(10)], input_dim=n_in)
    w2 = net(784, [256, 128])
    assert w2._chunks(128) == 2 and w2._col_parts(2) == 2
    assert w2._chunks(256) == 4 and w2._col_parts(4) == 4
    assert w2._col_parts(16) == 0                     # 16 columns a run: too narrow
    assert net(40, [128, 48])._col_parts(2) == 0      # not transposed (narrow): row chunks
    assert net(784, [256], bn=True)._chunks(128) == 1  # BatchNorm: whole batches
    assert fnn.Sequential([fnn.Dense(300)], input_dim=784)._col_parts(2) == 0  # last layer


@pytest.mark.parametrize("batch_size, n", [(256, 1100), (128, 1100), (256, 296), (200, 1347),
                                           (128, 160)])
def test_column_split_matches_row_chunks(wide_first, monkeypatch, batch_size, n):
    """Smaller last batches (40 rows of 296, 147 of 1347, 32 of 160) take
    fewer row chunks while the columns keep their runs; Dropout after the
    first layer draws the row chunks' mask."""
    rows, hr = _fit(False, monkeypatch, batch_size=batch_size, n=n)
    cols, hc = _fit(True, monkeypatch, batch_size=batch_size, n=n)
    assert rows._buffers.col_parts == 0 and cols._buffers.col_parts == cols._buffers.n_chunks > 1
    np.testing.assert_allclose(cols.get_weights(), rows.get_weights(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(hc.batch_losses, hr.batch_losses, rtol=1e-13)
    assert hc.history["accuracy"] == hr.history["accuracy"]
    for a, b in zip(cols._opt_state.values(), rows._opt_state.values()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("opt", [lambda: fnn.SGD(0.05, momentum=0.9, nesterov=True),
                                 lambda: fnn.RMSProp(0.01), lambda: fnn.AdamW(0.01, 0.1)])
def test_column_split_without_bias_or_weights(wide_first, monkeypatch, opt):
    rows, hr = _fit(False, monkeypatch, bias=False, dropout=0, opt=opt(), weighted=False)
    cols, hc = _fit(True, monkeypatch, bias=False, dropout=0, opt=opt(), weighted=False)
    assert cols._buffers.col_parts == 4
    np.testing.assert_allclose(cols.get_weights(), rows.get_weights(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(hc.batch_losses, hr.batch_losses, rtol=1e-13)


def test_column_split_float32_close_to_row_chunks(wide_first, monkeypatch):
    rows, hr = _fit(False, monkeypatch, dtype="float32")
    cols, hc = _fit(True, monkeypatch, dtype="float32")
    np.testing.assert_allclose(cols.get_weights(), rows.get_weights(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hc.batch_losses, hr.batch_losses, rtol=1e-5)


def test_serial_and_parallel_passes_are_bitwise_equal(wide_first, monkeypatch):
    one, h1 = _fit(True, monkeypatch, dtype="float32", threads=1)   # plain loops
    two, h2 = _fit(True, monkeypatch, dtype="float32", threads=2)   # Numba's pool
    assert one._buffers.col_parts == 4
    assert one.get_weights().tobytes() == two.get_weights().tobytes()
    assert h1.batch_losses.tobytes() == h2.batch_losses.tobytes()


def _diverge(split, monkeypatch):
    monkeypatch.setattr(fmodel, "COLUMN_SPLIT", split)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 40))
    y = 100 * X[:, 0] + rng.normal(size=1000)
    m = fnn.Sequential([fnn.Dense(128, activation="relu"), fnn.Dense(48, activation="relu"),
                        fnn.Dense(1)], seed=1, dtype="float64")
    m.compile("mse", fnn.SGD(lr=0.5, momentum=0.9))
    with pytest.warns(RuntimeWarning, match="loss became"):
        h = m.fit(X, y, batch_size=128, epochs=5, shuffle=False)
    return m, h


def test_divergence_stops_before_the_bad_update(wide_first, monkeypatch):
    """The loss check sits between the chunk pass and the update pass: the
    batch whose loss is not finite changes nothing, as on the row path."""
    got = []
    for split in (False, True):
        m, h = _diverge(split, monkeypatch)
        assert h.stop_reason.startswith("diverged")
        assert np.isfinite(m._params).all()
        got.append((m, h, int(m._opt_state["t"][0])))
    (rows, hr, done_r), (cols, hc, done_c) = got
    assert cols._buffers.col_parts == 2 and rows._buffers.col_parts == 0
    assert done_c == done_r >= 1 and len(hc.batch_losses) == done_c + 1
    np.testing.assert_allclose(cols.get_weights(), rows.get_weights(), rtol=1e-6)
