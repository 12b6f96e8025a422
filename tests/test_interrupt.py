"""Stopping safely: Ctrl-C during fit (in a subprocess and in-process) and
divergence both leave the model at the last completed, finite update."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import trainer
from fastnn.callbacks import TerminateOnNaN


def data(n=640, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def net(seed=5):
    model = fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.BatchNorm(), fnn.Dropout(0.2),
                            fnn.Dense(2)], input_dim=4, seed=seed)
    model.compile(optimizer=fnn.Adam(lr=0.01))
    return model


def trained_on(n_batches, X, y, batch_size, epochs_before=0, make=net):
    """A fresh model trained (no shuffling) for ``epochs_before`` whole epochs,
    then on exactly the next ``n_batches`` batches."""
    model = make()
    if epochs_before:
        model.fit(X, y, epochs=epochs_before, batch_size=batch_size, shuffle=False)
    if n_batches:
        rows = n_batches * batch_size
        model.fit(X[:rows], y[:rows], epochs=1, batch_size=batch_size, shuffle=False)
    return model


def same_weights(a, b):
    assert np.array_equal(a._params, b._params)
    assert np.array_equal(a._state, b._state)
    for key in ("s1", "s2", "t"):
        assert np.array_equal(a._opt_state[key], b._opt_state[key])


@pytest.fixture
def one_batch_per_call(monkeypatch):
    """Make every compiled call run a single minibatch; returns a hook list:
    hooks[i] runs after the (i+1)-th call."""
    monkeypatch.setattr(trainer, "_FLOPS_PER_CALL", 1)
    real = trainer.train_batches
    hooks = {}
    calls = [0]

    def wrapped(*args):
        got = real(*args)
        calls[0] += 1
        if calls[0] in hooks:
            hooks[calls[0]]()
        return got
    monkeypatch.setattr(trainer, "train_batches", wrapped)
    return hooks


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


# --------------------------------------------------------------- Ctrl-C
def test_ctrl_c_mid_epoch_keeps_the_last_completed_update(one_batch_per_call, capsys):
    X, y = data()
    one_batch_per_call[5] = sigint
    model = net()
    hist = model.fit(X, y, epochs=3, batch_size=16, shuffle=False)
    assert hist.stop_reason.startswith("interrupted")
    assert hist.epoch == [] and hist.history == {}
    assert len(hist.batch_losses) == 5 and model._opt_state["t"][0] == 5
    assert model._epoch == 0
    same_weights(model, trained_on(5, X, y, 16))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "interrupted" in capsys.readouterr().err
    # the model stays usable: predict and continue training
    assert np.isfinite(model.predict_proba(X)).all()
    assert model.fit(X, y, epochs=1, batch_size=16).stop_reason is None


def test_ctrl_c_in_a_callback_stops_after_that_epoch():
    X, y = data()

    class Press:
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                sigint()
    model = net()
    hist = model.fit(X, y, epochs=5, batch_size=32, callbacks=[Press()])
    assert hist.epoch == [0, 1] and hist.stop_reason.startswith("interrupted")
    assert len(hist.batch_losses) == 2 * 20 and model._epoch == 2


def test_second_ctrl_c_interrupts_at_once_and_fit_still_returns(one_batch_per_call):
    X, y = data()

    def press_twice():
        sigint()
        sigint()
    one_batch_per_call[3] = press_twice
    model = net()
    hist = model.fit(X, y, epochs=2, batch_size=16, shuffle=False)
    assert hist.stop_reason.startswith("interrupted")
    assert model._opt_state["t"][0] == 3 and len(hist.batch_losses) == 3
    same_weights(model, trained_on(3, X, y, 16))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_keyboard_interrupt_without_our_handler(one_batch_per_call):
    """Where no SIGINT handler can be installed, a KeyboardInterrupt raised
    between compiled calls is caught the same way."""
    X, y = data()

    def raise_ki():
        raise KeyboardInterrupt
    one_batch_per_call[7] = raise_ki
    previous = signal.signal(signal.SIGINT, lambda *a: None)   # not Python's default
    try:
        model = net()
        hist = model.fit(X, y, epochs=2, batch_size=16, shuffle=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert hist.stop_reason.startswith("interrupted")
    assert len(hist.batch_losses) == 7
    same_weights(model, trained_on(7, X, y, 16))


def test_fit_in_a_worker_thread():
    X, y = data()
    here, there = net(), net()
    here.fit(X, y, epochs=2)
    worker = threading.Thread(target=there.fit, args=(X, y), kwargs=dict(epochs=2))
    worker.start()
    worker.join()
    same_weights(here, there)


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnn as fnn
    from fastnn.callbacks import ModelCheckpoint

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    model = fnn.Sequential([fnn.Dense(32, activation="relu"), fnn.BatchNorm(),
                            fnn.Dense(2)], input_dim=6, seed=1)
    model.compile(optimizer="adam")

    class Ready:
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                print("ready", flush=True)

    hist = model.fit(X, y, epochs=100000, batch_size=32,
                     callbacks=[ModelCheckpoint(out + "/ckpt.fnn"), Ready()])
    model.save(out + "/final.fnn")
    print("stopped", len(hist.epoch), hist.stop_reason, flush=True)
""")


def test_sigint_to_a_subprocess_saves_a_usable_model(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)       # never hang the test suite
    watchdog.start()
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    words = out.split()
    assert words[0] == "stopped" and "interrupted" in out, out
    epochs = int(words[1])
    final = fnn.load(tmp_path / "final.fnn")
    checkpoint = fnn.load(tmp_path / "ckpt.fnn")
    assert final._epoch == epochs >= 2
    assert epochs - 1 <= checkpoint._epoch <= epochs
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    X = np.random.default_rng(1).normal(size=(50, 6))
    for model in (final, checkpoint):
        assert np.isfinite(model._params).all()
        assert model.predict(X).shape == (50,)


# --------------------------------------------------------------- divergence
def diverging_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)) * 10
    return X, X @ rng.normal(size=5) * 100


def diverging_net():
    model = fnn.Sequential([fnn.Dense(16, activation="relu"), fnn.BatchNorm(),
                            fnn.Dense(16, activation="relu"), fnn.Dense(1)],
                           input_dim=5, seed=1)
    model.compile(loss="mse", optimizer=fnn.SGD(lr=0.5, momentum=0.9))
    return model


@pytest.mark.parametrize("slices", ["one call", "one batch per call"])
def test_divergence_stops_with_the_last_finite_weights(slices, monkeypatch):
    if slices == "one batch per call":
        monkeypatch.setattr(trainer, "_FLOPS_PER_CALL", 1)
    X, y = diverging_data()
    model = diverging_net()
    with pytest.warns(RuntimeWarning, match="loss became .* last finite update"):
        hist = model.fit(X, y, epochs=3, batch_size=16, shuffle=False)
    assert hist.stop_reason.startswith("diverged")
    # the diverged epoch is logged (as Keras logs it) with its non-finite loss
    assert hist.epoch == [0] and set(hist.history) == {"loss", "lr"}
    assert not np.isfinite(hist.history["loss"][0]) and not np.isfinite(hist.batch_losses[-1])
    assert model._epoch == 0                      # an epoch that diverged does not count
    done = int(model._opt_state["t"][0])
    assert len(hist.batch_losses) == done + 1 and done >= 1
    assert np.isfinite(model._params).all() and np.isfinite(model._state).all()
    # weights, BatchNorm statistics and optimizer state of exactly `done` updates
    same_weights(model, trained_on(done, X, y, 16, make=diverging_net))
    assert model.predict(X).shape == (2000,)


def test_a_diverged_epoch_reaches_history_and_callbacks():
    """A classifier whose loss overflows in its second epoch: History and the
    callbacks get that epoch with its non-finite loss (TerminateOnNaN sees it,
    as in Keras), training stops there, the weights stay finite."""
    X, y = data(400)
    labels = (X[:, 0] > 0).astype(int)
    model = fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.Dense(2)], input_dim=4, seed=0)
    model.compile(loss="softmax_cross_entropy", optimizer=fnn.SGD(lr=0.05))
    model.fit(X, labels, epochs=1)
    model.optimizer.lr = 1e30
    seen = []

    class Record:
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, dict(logs)))
    with pytest.warns(RuntimeWarning, match="loss became"):
        hist = model.fit(X, labels, epochs=5, callbacks=[TerminateOnNaN(), Record()])
    assert hist.stop_reason.startswith("diverged") and hist.epoch == [1]
    assert not np.isfinite(hist.history["loss"][-1])
    assert 0.0 <= hist.history["accuracy"][-1] <= 1.0 or np.isnan(hist.history["accuracy"][-1])
    assert [e for e, _ in seen] == [1] and not np.isfinite(seen[0][1]["loss"])
    assert np.isfinite(model._params).all()


def test_terminate_on_nan_stops_on_an_overflowing_validation_loss():
    X, y = data(200)
    model = fnn.Sequential([fnn.Dense(4), fnn.Dense(1)], input_dim=4, seed=0)
    model.compile(loss="mse", optimizer="sgd")
    X_val, y_val = X[:20], np.full(20, 1e30)
    hist = model.fit(X, y.astype(float), epochs=5, validation_data=(X_val, y_val),
                     callbacks=[TerminateOnNaN()])
    assert hist.epoch == [0] and hist.stop_reason == "stopped by TerminateOnNaN after epoch 0"
    assert not np.isfinite(hist.history["val_loss"][0])
    assert TerminateOnNaN().on_epoch_end(0, {"loss": float("nan")})
    assert not TerminateOnNaN().on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
