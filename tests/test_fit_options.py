"""fit's options: validation_split (a held-out tail), validation_data (with
labels encoded as in training), sample_weight and class_weight."""

import numpy as np
import pytest

import fastnn as fnn


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.7)]
    return X, y


def net(seed=4, units=3, loss="softmax_cross_entropy"):
    model = fnn.Sequential([fnn.Dense(6, activation="tanh"), fnn.Dense(units)], input_dim=3,
                           seed=seed)
    model.compile(loss=loss, optimizer=fnn.Adam(lr=0.02))
    return model


def test_validation_split_holds_out_the_tail():
    X, y = data()
    split = net()
    hist = split.fit(X, y, epochs=3, batch_size=16, validation_split=0.25)
    head = net()
    head_hist = head.fit(X[:150], y[:150], epochs=3, batch_size=16,
                         validation_data=(X[150:], y[150:]))
    assert np.array_equal(split._params, head._params)
    assert hist.history == head_hist.history
    assert hist.history["val_loss"][-1] == pytest.approx(head.evaluate(X[150:], y[150:])["loss"])


def test_validation_data_uses_the_training_label_encoding():
    X, y = data()
    only_c = y == "c"                      # validation rows of a single class
    model = net()
    hist = model.fit(X, y, epochs=2, validation_data=(X[only_c], y[only_c]))
    ev = model.evaluate(X[only_c], y[only_c])
    assert hist.history["val_accuracy"][-1] == ev["accuracy"]
    assert hist.history["val_loss"][-1] == pytest.approx(ev["loss"])


def test_validation_sample_weight():
    X, y = data()
    w = np.r_[np.ones(50), np.zeros(50)]
    model = net()
    hist = model.fit(X[:100], y[:100], epochs=1, validation_data=(X[100:], y[100:], w))
    assert hist.history["val_loss"][0] == pytest.approx(model.evaluate(X[100:150],
                                                                       y[100:150])["loss"])


def test_uniform_weights_change_nothing():
    X, y = data()
    plain = net()
    plain.fit(X, y, epochs=2, batch_size=10)
    for kwargs in (dict(sample_weight=np.full(len(y), 2.0)),
                   dict(class_weight={"a": 3.0, "b": 3.0, "c": 3.0}),
                   dict(sample_weight=np.full(len(y), 0.5), class_weight={"a": 4.0, "b": 4.0,
                                                                          "c": 4.0})):
        weighted = net()
        weighted.fit(X, y, epochs=2, batch_size=10, **kwargs)
        np.testing.assert_allclose(weighted._params, plain._params, rtol=1e-4, atol=1e-6)


def test_class_weight_is_sample_weight_per_class():
    X, y = data()
    cw = {"a": 0.5, "c": 4.0}                       # "b" keeps weight 1
    by_class = net()
    by_class.fit(X, y, epochs=2, batch_size=10, class_weight=cw)
    by_row = net()
    by_row.fit(X, y, epochs=2, batch_size=10,
               sample_weight=np.array([cw.get(label, 1.0) for label in y]))
    assert np.array_equal(by_class._params, by_row._params)

    counts = {c: int((y == c).sum()) for c in "abc"}
    balanced = net()
    balanced.fit(X, y, epochs=2, batch_size=10, class_weight="balanced")
    expected = np.array([len(y) / (3 * counts[label]) for label in y])
    by_row = net()
    by_row.fit(X, y, epochs=2, batch_size=10, sample_weight=expected)
    np.testing.assert_allclose(balanced._params, by_row._params, rtol=1e-5, atol=1e-6)


def test_zero_weights_drop_rows_from_the_loss():
    X, y = data()
    model = net()
    model.fit(X, y, epochs=1)
    w = (np.arange(len(y)) < 120).astype(float)
    assert model.evaluate(X, y, sample_weight=w)["loss"] == pytest.approx(
        model.evaluate(X[:120], y[:120])["loss"], rel=1e-6)


def test_binary_class_weight():
    X, _ = data()
    y = (X[:, 0] > 0.5).astype(int)
    a, b = net(units=1, loss="binary_cross_entropy"), net(units=1, loss="binary_cross_entropy")
    a.fit(X, y, epochs=2, class_weight={1: 3.0})
    b.fit(X, y, epochs=2, sample_weight=np.where(y == 1, 3.0, 1.0))
    assert np.array_equal(a._params, b._params)
