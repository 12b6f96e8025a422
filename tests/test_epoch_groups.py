"""Several epochs in one compiled call (``trainer._epoch_group``, used where
nothing runs between epochs but their logs): the same bits, logs and draws
from the model's RNG as one epoch at a time, and the same stops."""

import os
import signal
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import trainer


class NoOp:
    """A callback: its presence keeps fit at one epoch per call."""

    def on_epoch_end(self, epoch, logs):
        return False


def moons_net():
    m = fnn.Sequential([fnn.Dense(5, activation="relu"), fnn.Dense(1, activation="sigmoid")],
                       input_dim=2, seed=0)
    m.compile("binary_cross_entropy", fnn.Adam(0.01))
    return m


def softmax_net():
    m = fnn.Sequential([fnn.Dense(12, activation="tanh"), fnn.Dense(3)], input_dim=6, seed=1)
    m.compile(optimizer=fnn.SGD(lr=0.05, momentum=0.9, nesterov=True), l2=1e-3)
    return m


def chunked_net():
    m = fnn.Sequential([fnn.Dense(96, activation="tanh"), fnn.Dropout(0.2),
                        fnn.Dense(48, activation="relu"), fnn.Dense(3)],
                       input_dim=6, dtype="float64", seed=2)
    m.compile(optimizer=fnn.Adam(1e-2), l2=1e-3)
    return m


def batchnorm_net():
    m = fnn.Sequential([fnn.Dense(16, activation="relu"), fnn.BatchNorm(), fnn.Dropout(0.1),
                        fnn.Dense(1)], input_dim=6, seed=3)
    m.compile(loss="mse", optimizer=fnn.RMSProp(1e-2))
    return m


def diverging_net():
    m = fnn.Sequential([fnn.Dense(8, activation="tanh"), fnn.Dense(1)], input_dim=6, seed=0)
    m.compile(loss="mse", optimizer=fnn.SGD(lr=1.1, momentum=0.9))
    return m


def data(n, kind, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6 if kind != "binary" else 2))
    if kind == "binary":
        return X, (X[:, 0] * X[:, 1] > 0).astype(int)
    if kind == "classes":
        return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    return X, X @ rng.normal(size=6)


@pytest.fixture
def groups(monkeypatch):
    """The sizes of the epoch groups fit runs, and the compiled calls (the
    ``calls`` attribute) made while a group ran."""
    class Sizes(list):
        calls = 0
    sizes = Sizes()
    real_group = trainer._epoch_group

    def counted(model, loop, history, g, *args):
        sizes.append(g)
        inner = trainer.run_batches

        def call(*a):
            sizes.calls += 1
            return inner(*a)
        monkeypatch.setattr(trainer, "run_batches", call)
        try:
            return real_group(model, loop, history, g, *args)
        finally:
            monkeypatch.setattr(trainer, "run_batches", inner)
    monkeypatch.setattr(trainer, "_epoch_group", counted)
    return sizes


def fit_both(make, X, y, **kw):
    """(model, history) fitted in epoch groups, then one epoch per call."""
    out = []
    for callbacks in (None, [NoOp()]):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            hist = model.fit(X, y, callbacks=callbacks, **kw)
        out.append((model, hist))
    return out


def assert_same(a, b):
    (ma, ha), (mb, hb) = a, b
    assert np.array_equal(ma._params, mb._params)
    assert np.array_equal(ma._state, mb._state)
    for key in ("s1", "s2", "t"):
        assert np.array_equal(ma._opt_state[key], mb._opt_state[key])
    assert ma._epoch == mb._epoch
    assert ha.epoch == hb.epoch and ha.history == hb.history
    assert ha.stop_reason == hb.stop_reason
    np.testing.assert_array_equal(ha.batch_losses, hb.batch_losses)
    assert ma._shuffle_rng.integers(2**62) == mb._shuffle_rng.integers(2**62)


CASES = {
    "full batch, shuffled": (moons_net, 300, "binary", dict(batch_size=300, epochs=40)),
    "partial last batch, in order": (softmax_net, 250, "classes",
                                     dict(batch_size=64, epochs=12, shuffle=False)),
    "row chunks, dropout, weights": (chunked_net, 600, "classes",
                                     dict(batch_size=256, epochs=6)),
    "batchnorm": (batchnorm_net, 200, "regression", dict(batch_size=50, epochs=9)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_epoch_groups_match_one_epoch_per_call(case, groups):
    make, n, kind, kw = CASES[case]
    X, y = data(n, kind)
    if case.endswith("weights"):
        kw = dict(kw, sample_weight=np.linspace(0.5, 2.0, n))
    grouped, single = fit_both(make, X, y, **kw)
    assert groups == [kw["epochs"]] and groups.calls == 1
    assert_same(grouped, single)
    if case.startswith("row chunks"):
        assert grouped[0]._buffers.n_chunks > 1


def test_groups_split_a_long_fit_and_a_second_fit_goes_on(groups, monkeypatch):
    make, n, kind, kw = CASES["partial last batch, in order"]
    X, y = data(n, kind)
    # 12 batches of 64 rows per call: 3 epochs of 250 rows
    per_row = max(6 * make()._params.size, trainer._MIN_FLOPS_PER_ROW)
    monkeypatch.setattr(trainer, "_FLOPS_PER_CALL", per_row * 64 * 12)
    grouped, single = fit_both(make, X, y, batch_size=64, epochs=7)
    assert groups == [3, 3] and groups.calls == 2      # and a last epoch on its own
    assert_same(grouped, single)
    for model, cb in ((grouped[0], None), (single[0], [NoOp()])):
        model.fit(X, y, batch_size=64, epochs=4, callbacks=cb)
    assert_same((grouped[0], grouped[1]), (single[0], single[1]))


def test_a_loss_that_overflows_mid_group_stops_as_one_epoch_at_a_time(groups):
    X, y = data(200, "regression")
    grouped, single = fit_both(diverging_net, X, y, batch_size=64, epochs=40)
    assert groups == [40] and groups.calls > 1     # the group, then epoch by epoch
    assert grouped[1].stop_reason.startswith("diverged")
    assert 0 < len(grouped[1].epoch) < 40
    assert_same(grouped, single)
    assert np.isfinite(grouped[0]._params).all()


def test_ctrl_c_during_a_group_stops_after_it(monkeypatch, groups):
    X, y = data(300, "binary")
    real = trainer.run_batches

    def press(*args):
        got = real(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return got
    monkeypatch.setattr(trainer, "run_batches", press)
    model = moons_net()
    hist = model.fit(X, y, batch_size=100, epochs=10)
    assert groups == [10]
    assert hist.epoch == list(range(10)) and model._epoch == 10
    assert hist.stop_reason.startswith("interrupted") and "10 complete epoch" in \
        hist.stop_reason
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_keyboard_interrupt_in_a_group_undoes_it(monkeypatch, groups):
    """Where no SIGINT handler can be installed, a KeyboardInterrupt after a
    group's call leaves the model at the end of the last epoch logged."""
    X, y = data(250, "classes")
    per_row = max(6 * softmax_net()._params.size, trainer._MIN_FLOPS_PER_ROW)
    monkeypatch.setattr(trainer, "_FLOPS_PER_CALL", per_row * 64 * 12)   # 3 epochs a call
    calls = []
    real = trainer.run_batches

    def interrupted(*args):
        got = real(*args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return got
    monkeypatch.setattr(trainer, "run_batches", interrupted)
    previous = signal.signal(signal.SIGINT, lambda *a: None)      # not Python's default
    try:
        model = softmax_net()
        hist = model.fit(X, y, batch_size=64, epochs=9)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert hist.stop_reason.startswith("interrupted")
    assert hist.epoch == [0, 1, 2] and model._epoch == 3 and len(hist.batch_losses) == 12
    monkeypatch.setattr(trainer, "run_batches", real)
    reference = softmax_net()
    reference.fit(X, y, batch_size=64, epochs=3)
    assert np.array_equal(model._params, reference._params)
    for key in ("s1", "s2", "t"):
        assert np.array_equal(model._opt_state[key], reference._opt_state[key])
    assert model._shuffle_rng.integers(2**62) == reference._shuffle_rng.integers(2**62)
