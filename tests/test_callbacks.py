"""Callbacks (EarlyStopping, ModelCheckpoint, TerminateOnNaN, CSVLogger,
ReduceLROnPlateau, plain objects) and the progress output of verbose=0/1/2."""

import csv
import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from fastnn.schedules import ExponentialDecay


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] - X[:, 2] > 0).astype(int)


def net(lr=0.01, seed=2):
    model = fnn.Sequential([fnn.Dense(6, activation="tanh"), fnn.BatchNorm(), fnn.Dense(2)],
                           input_dim=3, seed=seed)
    model.compile(optimizer=fnn.Adam(lr=lr))
    return model


class FakeModel:
    """Just what the callbacks touch."""

    def __init__(self, lr=0.1):
        self._params = np.zeros(3)
        self._state = np.zeros(2)
        self.optimizer = fnn.SGD(lr=lr)


def feed(callback, values, key="val_loss", model=None):
    """Call on_epoch_end with ``values``; returns the epoch that asked to stop."""
    model = model or FakeModel()
    callback.on_train_begin(model)
    for epoch, value in enumerate(values):
        model._params[:] = epoch
        if callback.on_epoch_end(epoch, {key: value}):
            return epoch
    return None


# --------------------------------------------------------------- EarlyStopping
@pytest.mark.parametrize("patience, values, stop", [
    (0, [1.0, 0.9, 0.95], 2),                  # first epoch without improvement
    (1, [1.0, 0.9, 0.95], 2),
    (2, [1.0, 0.9, 0.95], None),
    (2, [1.0, 0.9, 0.95, 0.96], 3),            # two epochs in a row without improvement
    (2, [1.0, 0.9, 0.95, 0.8, 0.85, 0.7], None),  # improvement resets the count
    (3, [5.0, 4.0, 4.0, 4.0, 4.0], 4),          # equal is not better
    (1, [2.0, float("nan")], 1),               # NaN never improves
    (1, [float("nan"), 2.0], 0),
])
def test_early_stopping_patience(patience, values, stop):
    assert feed(EarlyStopping(patience=patience), values) == stop


def test_early_stopping_min_delta_mode_and_restore():
    es = EarlyStopping(monitor="val_loss", patience=1, min_delta=0.1)
    assert feed(es, [1.0, 0.95, 0.85]) == 1 and es.best == 1.0
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    assert feed(es, [0.5, 0.7, 0.6], key="val_accuracy") == 2
    assert es.best == 0.7 and es.best_epoch == 1
    model = FakeModel()
    es = EarlyStopping(monitor="loss", patience=2)
    assert feed(es, [3.0, 1.0, 2.0, 2.0], key="loss", model=model) == 3
    es.on_train_end(model)
    assert (model._params == 1).all()                 # epoch 1's weights are back
    es = EarlyStopping(monitor="loss", patience=2, restore_best=False)
    feed(es, [3.0, 1.0, 2.0, 2.0], key="loss", model=model)
    es.on_train_end(model)
    assert (model._params == 3).all()


def test_early_stopping_in_fit_restores_the_best_epoch():
    X, y = data()
    hist = net().fit(X, y, epochs=10, validation_split=0.2,
                     callbacks=[EarlyStopping(monitor="val_loss", min_delta=1e9, patience=2)])
    assert hist.epoch == [0, 1, 2]                    # nothing after epoch 0 counts
    assert hist.stop_reason == "stopped by EarlyStopping after epoch 2"
    model = net()
    model.fit(X, y, epochs=3, validation_split=0.2,
              callbacks=[EarlyStopping(monitor="loss", min_delta=1e9, patience=5)])
    best = net()
    best.fit(X, y, epochs=1, validation_split=0.2)
    assert np.array_equal(model._params, best._params)
    assert np.array_equal(model._state, best._state)


# --------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    X, y = data()
    model = net()
    every = ModelCheckpoint(tmp_path / "e{epoch}.fnn", monitor="loss")
    best = ModelCheckpoint(str(tmp_path / "best.fnn"), monitor="val_accuracy",
                           save_best_only=True)
    saved = []

    class Spy:
        def on_epoch_end(self, epoch, logs):
            saved.append((model._params.copy(), logs["val_accuracy"]))
    model.fit(X, y, epochs=4, validation_split=0.25, callbacks=[every, best, Spy()])
    for epoch in range(4):
        assert np.array_equal(fnn.load(tmp_path / f"e{epoch + 1}.fnn")._params, saved[epoch][0])
    best_epoch = int(np.argmax([acc for _, acc in saved]))   # first of the maxima
    assert np.array_equal(fnn.load(tmp_path / "best.fnn")._params, saved[best_epoch][0])


def test_model_checkpoint_arguments(tmp_path):
    with pytest.raises(TypeError, match="path"):
        ModelCheckpoint(None)
    with pytest.raises(ValueError, match="path"):
        ModelCheckpoint("m{step}.fnn")
    with pytest.raises(TypeError, match="save_best_only"):
        ModelCheckpoint("m.fnn", save_best_only="yes")
    X, y = data()
    model = net()
    w = model._params.copy()
    with pytest.raises(ValueError, match="monitor='val_loss'"):
        model.fit(X, y, callbacks=[ModelCheckpoint(tmp_path / "m.fnn", save_best_only=True)])
    with pytest.raises(ValueError, match="path"):
        model.fit(X, y, callbacks=[ModelCheckpoint(tmp_path / "no" / "m.fnn")])
    assert np.array_equal(model._params, w) and model._epoch == 0


# --------------------------------------------------------------- others
def test_csv_logger(tmp_path):
    X, y = data()
    path = tmp_path / "log.csv"
    model = net()
    hist = model.fit(X, y, epochs=3, validation_split=0.2, callbacks=[CSVLogger(path)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    assert [float(r[3]) for r in rows[1:]] == hist.history["val_loss"]
    model.fit(X, y, epochs=2, validation_split=0.2, callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(path.open()))
    assert len(rows) == 6 and [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3, 4]
    model.fit(X, y, epochs=1, callbacks=[CSVLogger(path, separator=";")])
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == "epoch;loss;accuracy;lr" and lines[1].startswith("5;")


def test_reduce_lr_on_plateau_unit():
    model = FakeModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_lr=0.2)
    cb.on_train_begin(model)
    lrs = []
    for epoch, v in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        cb.on_epoch_end(epoch, {"val_loss": v})
        lrs.append(model.optimizer.lr)
    #  improve, wait=1 -> halve, cooldown, wait=1 -> halve, cooldown, floor at min_lr
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]


def test_reduce_lr_on_plateau_in_fit_with_a_schedule():
    X, y = data()
    model = net(lr=0.04)
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    hist = model.fit(X, y, epochs=4, lr_schedule=ExponentialDecay(0.5), callbacks=[cb])
    # the base rate halves after every epoch but the first; the schedule scales the base
    bases = [0.04, 0.04, 0.02, 0.01]
    assert hist.history["lr"] == pytest.approx([b * 0.5 ** e for e, b in enumerate(bases)])
    assert model.optimizer.lr == 0.005
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="min_lr"):
        ReduceLROnPlateau(min_lr=-1)


def test_any_object_with_on_epoch_end_can_stop():
    X, y = data()

    class StopAtTwo:
        def on_epoch_end(self, epoch, logs):
            assert set(logs) == {"loss", "accuracy", "lr"}
            return epoch == 2
    hist = net().fit(X, y, epochs=10, callbacks=StopAtTwo())
    assert hist.epoch == [0, 1, 2] and hist.stop_reason == "stopped by StopAtTwo after epoch 2"
    with pytest.raises(TypeError, match=r"callbacks\[1\]"):
        net().fit(X, y, callbacks=[StopAtTwo(), "nope"])


def test_terminate_on_nan_unit():
    assert TerminateOnNaN().on_epoch_end(0, {"loss": math.inf})
    assert TerminateOnNaN().on_epoch_end(0, {"loss": 1.0, "val_loss": math.nan})
    assert not TerminateOnNaN().on_epoch_end(0, {"loss": 1.0})


# --------------------------------------------------------------- verbose
def test_verbose_levels(capsys):
    X, y = data()
    net().fit(X, y, epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    net().fit(X, y, epochs=2, verbose=2, validation_split=0.2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1 (1/2)")
    assert "rows/s" in lines[0] and "val_loss" in lines[0]
    net().fit(X, y, epochs=2, verbose=1, validation_split=0.2)
    err = capsys.readouterr().err
    assert "epoch 2 (2/2)" in err and "rows/s" in err and "val_accuracy" in err
    with pytest.raises(ValueError, match="verbose"):
        net().fit(X, y, verbose=3)
