"""Finite-difference gradient checks (float64) of the compiled kernels, and
their agreement with fastnn.reference on the same weights and batch."""

import numpy as np
import pytest

import fastnn as fnn
from tests._core_helpers import (
    ACTIVATIONS,
    compiled_loss_and_grads,
    reference_flat_grads,
    targets,
    to_reference,
)

LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mse", "half_mse", "half_poisson"]


def _model(hidden_act, loss, extra=(), l2=1e-2, k=None, dtype="float64", seed=0):
    k = k or (3 if loss == "softmax_cross_entropy" else 2)
    layers = [fnn.Dense(5, activation=hidden_act), *extra, fnn.Dense(4, activation=hidden_act),
              fnn.Dense(k)]
    m = fnn.Sequential(layers, input_dim=3, dtype=dtype, seed=seed)
    m.compile(loss=loss, optimizer=fnn.SGD(lr=0.1), l2=l2)
    # biases away from zero so every term of the gradient is exercised
    m._params += np.random.default_rng(seed + 1).normal(0, 0.1, m.n_params).astype(m.dtype)
    return m


def _fd_check(model, X, T, sw=None, eps=1e-6):
    loss, g, masks = compiled_loss_and_grads(model, X, T, sw)
    p = model._params
    fd = np.zeros_like(p)
    for i in range(p.size):
        old = p[i]
        p[i] = old + eps
        lp = compiled_loss_and_grads(model, X, T, sw)[0]
        p[i] = old - eps
        lm = compiled_loss_and_grads(model, X, T, sw)[0]
        p[i] = old
        fd[i] = (lp - lm) / (2 * eps)
    err = np.linalg.norm(fd - g) / max(np.linalg.norm(fd) + np.linalg.norm(g), 1e-12)
    return err, loss, g, masks


def _data(loss, k, n=7, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    T, _ = targets(loss, rng, n, k, np.float64)
    return X, T


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_finite_differences(act, loss):
    m = _model(act, loss)
    X, T = _data(loss, m.n_outputs)
    err, loss_value, g, _ = _fd_check(m, X, T)
    assert err < 1e-6
    # and the same loss and gradient as the NumPy reference
    r = to_reference(m)
    ref_loss = r.loss_and_grads(X, T)
    assert loss_value == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g, reference_flat_grads(r), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_with_batchnorm_dropout_and_weights(loss):
    extra = (fnn.BatchNorm(), fnn.Dropout(0.3))
    m = _model("tanh", loss, extra=extra)
    X, T = _data(loss, m.n_outputs, n=9)
    sw = np.random.default_rng(5).uniform(0.2, 2.0, X.shape[0])
    err, loss_value, g, masks = _fd_check(m, X, T, sw)
    assert err < 1e-6
    assert 0 < masks[2].mean() < 1          # the dropout mask really drops
    r = to_reference(m, masks)
    assert loss_value == pytest.approx(r.loss_and_grads(X, T, sw), rel=1e-12)
    np.testing.assert_allclose(g, reference_flat_grads(r), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
def test_gradient_blas_path(act, monkeypatch):
    """Wide layers take the BLAS path; same gradients and FD agreement."""
    from fastnn import model as model_mod
    monkeypatch.setattr(model_mod, "BLAS_MIN_MACS", 1)
    monkeypatch.setattr(model_mod, "BLAS_MIN_WEIGHTS", 1)
    m = _model(act, "softmax_cross_entropy", extra=(fnn.BatchNorm(),))
    assert m._use_blas[0] == 1
    X, T = _data("softmax_cross_entropy", m.n_outputs)
    err, loss_value, g, _ = _fd_check(m, X, T)
    assert err < 1e-6
    r = to_reference(m)
    assert loss_value == pytest.approx(r.loss_and_grads(X, T), rel=1e-12)


def test_float32_matches_reference():
    rng = np.random.default_rng(0)
    for act in ACTIVATIONS:
        for loss in LOSSES:
            m = _model(act, loss, extra=(fnn.BatchNorm(),), dtype="float32")
            X, T = _data(loss, m.n_outputs, n=16)
            X = X.astype(np.float32)
            T = T.astype(np.float32)
            loss_value, g, _ = compiled_loss_and_grads(m, X, T)
            r = to_reference(m)
            assert loss_value == pytest.approx(r.loss_and_grads(X, T), rel=1e-5, abs=1e-6)
            gr = reference_flat_grads(r)
            assert np.linalg.norm(g - gr) <= 1e-5 * np.linalg.norm(gr) + 1e-6
    del rng


def test_unbiased_layer_and_last_sigmoid_fused():
    m = fnn.Sequential([fnn.Dense(4, activation="elu", use_bias=False),
                        fnn.Dense(1, activation="sigmoid")], input_dim=3, dtype="float64",
                       seed=1)
    m.compile("binary_cross_entropy", fnn.SGD(), l2=0.0)
    X, T = _data("binary_cross_entropy", 1)
    err, *_ = _fd_check(m, X, T)
    assert err < 1e-6
    assert m.n_params == 3 * 4 + 4 * 1 + 1
