"""The tutorials' seed experiments reach the tutorials' results."""

import numpy as np
import pytest

import fastnn as fnn


def spiral(points=100, classes=3, seed=0):
    """CS231n's spiral: `classes` arms of `points` points each."""
    rng = np.random.default_rng(seed)
    X = np.zeros((points * classes, 2))
    y = np.zeros(points * classes, dtype=np.int64)
    for j in range(classes):
        ix = range(points * j, points * (j + 1))
        r = np.linspace(0.0, 1, points)
        t = np.linspace(j * 4, (j + 1) * 4, points) + rng.normal(size=points) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y


def test_spiral_linear_softmax():
    X, y = spiral()
    m = fnn.Sequential([fnn.Dense(3)], input_dim=2, seed=0)
    m.compile("softmax_cross_entropy", fnn.SGD(lr=1.0), l2=1e-3)
    m.fit(X, y, batch_size=len(X), epochs=200, shuffle=False)
    acc = m.evaluate(X, y)["accuracy"]
    assert 0.45 <= acc <= 0.58


def test_spiral_two_layer_relu_net():
    X, y = spiral()
    m = fnn.Sequential([fnn.Dense(100, activation="relu"), fnn.Dense(3)], input_dim=2, seed=0)
    m.compile("softmax_cross_entropy", fnn.SGD(lr=1.0), l2=1e-3)
    m.fit(X, y, batch_size=len(X), epochs=10_000, shuffle=False)
    assert m.evaluate(X, y)["accuracy"] >= 0.97


def test_blobs_tutorial_net():
    from sklearn.datasets import make_blobs
    X, y = make_blobs(10_000, centers=3, cluster_std=0.8, random_state=0)
    m = fnn.Sequential([fnn.Dense(3, activation="tanh"), fnn.Dense(3)], input_dim=2, seed=0)
    m.compile("softmax_cross_entropy", fnn.SGD(lr=0.01))
    h = m.fit(X, y, batch_size=32, epochs=10)
    assert h.history["accuracy"][-1] >= 0.95
    assert m.evaluate(X, y)["accuracy"] >= 0.95


def test_moons_adam():
    from sklearn.datasets import make_moons
    X, y = make_moons(900, noise=0.2, random_state=0)
    m = fnn.Sequential([fnn.Dense(5, activation="relu"), fnn.Dense(2, activation="relu"),
                        fnn.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    m.compile("binary_cross_entropy", fnn.Adam(lr=0.01))
    m.fit(X, y, batch_size=64, epochs=300)
    assert m.evaluate(X, y)["accuracy"] >= 0.93


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_and_table(seed):
    X = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    y = (X[:, 0].astype(bool) & X[:, 2].astype(bool)).astype(int)
    m = fnn.Sequential([fnn.Dense(2, activation="sigmoid"), fnn.Dense(1, activation="sigmoid")],
                       input_dim=3, seed=seed)
    m.compile("binary_cross_entropy", fnn.Adam(lr=0.1))
    m.fit(X, y, batch_size=8, epochs=500)
    assert list(m.predict(X)) == list(y)
