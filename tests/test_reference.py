"""Tests for fastnn.reference, the NumPy oracle."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

try:
    from fastnn import reference as ref
except ImportError:  # package __init__ not importable yet: load the file itself
    _path = pathlib.Path(__file__).resolve().parents[1] / "fastnn" / "reference.py"
    _spec = importlib.util.spec_from_file_location("fastnn_reference", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)

ACTS = sorted(ref.ACTIVATIONS)
LOSS_NAMES = ["softmax_cross_entropy", "binary_cross_entropy", "mse", "half_mse"]


# ---------------------------------------------------------------- helpers

def rel_err(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def targets(loss, n, rng, dtype=np.float64):
    if loss == "softmax_cross_entropy":
        return np.eye(3, dtype=dtype)[rng.integers(0, 3, n)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, 1)).astype(dtype)
    return rng.normal(size=(n, 2)).astype(dtype)


def dense(rng, fan_in, fan_out, act="identity", dtype=np.float64):
    W = ref.init_weights(rng, fan_in, fan_out, "glorot_uniform", dtype)
    b = rng.normal(scale=0.3, size=fan_out).astype(dtype)
    return ref.Dense(W, b, activation=act)


def batchnorm(rng, k, dtype=np.float64):
    return ref.BatchNorm(rng.uniform(0.5, 1.5, k).astype(dtype), rng.normal(size=k).astype(dtype),
                         np.zeros(k, dtype), np.ones(k, dtype))


def make_model(act, loss, rng, bn=False, dropout_mask=None, l2=0.1, l2_per_row=False,
               dtype=np.float64):
    k = targets(loss, 1, rng).shape[1]
    layers = [dense(rng, 3, 5, act, dtype)]
    if bn:
        layers.append(batchnorm(rng, 5, dtype))
    layers.append(dense(rng, 5, 4, act, dtype))
    if dropout_mask is not None:
        layers.append(ref.Dropout(0.3, fixed_mask=dropout_mask))
    layers.append(dense(rng, 4, k, "identity", dtype))
    return ref.Model(layers, loss, l2=l2, l2_per_row=l2_per_row)


def fd_check(model, X, T, sw=None, eps=1e-6):
    """Relative error between analytic and central-difference gradients."""
    model.loss_and_grads(X, T, sw)
    analytic = np.concatenate([g.ravel().copy() for g in model.grads()])
    numeric = []
    for p in model.params():
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = model.loss_and_grads(X, T, sw)
            p[idx] = old - eps
            down = model.loss_and_grads(X, T, sw)
            p[idx] = old
            numeric.append((up - down) / (2 * eps))
    return rel_err(numeric, analytic)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_plain_weighted(act, loss):
    rng = np.random.default_rng(0)
    model = make_model(act, loss, rng)
    X = rng.normal(size=(7, 3))
    sw = rng.uniform(0.2, 2.0, 7)
    assert fd_check(model, X, targets(loss, 7, rng), sw) < 1e-6


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_batchnorm_dropout(act, loss):
    rng = np.random.default_rng(1)
    mask = rng.random((8, 4)) >= 0.3
    model = make_model(act, loss, rng, bn=True, dropout_mask=mask, l2=0.05, l2_per_row=True)
    X = rng.normal(size=(8, 3))
    assert fd_check(model, X, targets(loss, 8, rng)) < 1e-6


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_output_activation(act):
    rng = np.random.default_rng(2)
    model = ref.Model([dense(rng, 3, 4, "tanh"), dense(rng, 4, 2, act)], "mse", l2=0.01)
    assert fd_check(model, rng.normal(size=(6, 3)), rng.normal(size=(6, 2))) < 1e-6


@pytest.mark.parametrize("act", ACTS)
def test_activation_grad_matches_fd(act):
    z = np.random.default_rng(3).normal(scale=2.0, size=50)
    z = z[np.abs(z) > 1e-3]
    fd = (ref.activation(act, z + 1e-6) - ref.activation(act, z - 1e-6)) / 2e-6
    np.testing.assert_allclose(ref.activation_grad(act, z), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_grad_fd_multi_label_and_soft_targets(loss):
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(5, 3))
    T = rng.uniform(0, 1, (5, 3))  # soft targets, rows not summing to 1
    sw = rng.uniform(0.5, 2, 5)
    fn = ref.LOSSES[loss]
    _, dZ = fn(Z, T, sw)
    num = np.zeros_like(Z)
    for idx in np.ndindex(Z.shape):
        Zp, Zm = Z.copy(), Z.copy()
        Zp[idx] += 1e-6
        Zm[idx] -= 1e-6
        num[idx] = (fn(Zp, T, sw)[0] - fn(Zm, T, sw)[0]) / 2e-6
    assert rel_err(num, dZ) < 1e-7


# ---------------------------------------------------------------- activations

def test_activation_values():
    z = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    e = np.exp(z)
    cases = {
        "identity": z, "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
        "relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, 0.01 * z),
        "elu": np.where(z > 0, z, e - 1),
        "selu": ref.SELU_SCALE * np.where(z > 0, z, ref.SELU_ALPHA * (e - 1)),
        "gelu": np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in z]),
        "softplus": np.log(1 + e),
    }
    assert set(cases) == set(ref.ACTIVATIONS)
    for name, want in cases.items():
        np.testing.assert_allclose(ref.activation(name, z), want, rtol=1e-12, atol=1e-15)
    # derivative at the kink is the left one
    zero = np.zeros(1)
    assert ref.activation_grad("relu", zero)[0] == 0
    assert ref.activation_grad("leaky_relu", zero)[0] == 0.01
    assert ref.activation_grad("elu", zero)[0] == 1.0
    assert ref.activation_grad("selu", zero)[0] == pytest.approx(ref.SELU_SCALE * ref.SELU_ALPHA)
    assert ref.activation_grad("gelu", zero)[0] == 0.5


def test_activation_aliases_and_errors():
    z = np.linspace(-1, 1, 5)
    np.testing.assert_array_equal(ref.activation("linear", z), z)
    np.testing.assert_array_equal(ref.activation("logistic", z), ref.sigmoid(z))
    assert ref.resolve_activation("logistic") == "sigmoid"
    with pytest.raises(ValueError, match="activation"):
        ref.activation("swishy", z)
    with pytest.raises(ValueError, match="activation"):
        ref.Dense(np.zeros((2, 2)), activation="nope")


def test_extreme_inputs_are_finite():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        for name in ["sigmoid", "softplus", "elu", "selu", "tanh"]:
            assert np.all(np.isfinite(ref.activation(name, z)))
            assert np.all(np.isfinite(ref.activation_grad(name, z)))
        T = np.array([[1.0], [0.0], [1.0], [0.0], [1.0]])
        loss, dZ = ref.binary_cross_entropy(z[:, None], T)
        assert loss == pytest.approx((1000 + math.log(2) + 50) / 5)
        np.testing.assert_allclose(dZ[:, 0], [-0.2, 0.0, -0.1, 0.2, 0.0], atol=1e-15)
        Z = np.array([[1000.0, -1000.0], [0.0, 0.0]])
        loss, dZ = ref.softmax_cross_entropy(Z, np.array([[0.0, 1.0], [1.0, 0.0]]))
        assert loss == pytest.approx((2000 + math.log(2)) / 2)
        np.testing.assert_allclose(dZ, [[0.5, -0.5], [-0.25, 0.25]])


@pytest.mark.parametrize("name", ACTS)
def test_float32_preserved(name):
    z = np.linspace(-3, 3, 11, dtype=np.float32)
    assert ref.activation(name, z).dtype == np.float32
    assert ref.activation_grad(name, z).dtype == np.float32


# ---------------------------------------------------------------- losses

def test_losses_against_naive_formulas():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(6, 3))
    Y = np.eye(3)[rng.integers(0, 3, 6)]
    w = rng.uniform(0.5, 2, 6)
    P = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    np.testing.assert_allclose(ref.softmax(Z), P)
    rows = -(Y * np.log(P)).sum(1)
    assert ref.softmax_cross_entropy(Z, Y)[0] == pytest.approx(rows.mean())
    loss, dZ = ref.softmax_cross_entropy(Z, Y, w)
    assert loss == pytest.approx((w * rows).sum() / w.sum())
    np.testing.assert_allclose(dZ, (P - Y) * (w / w.sum())[:, None])

    t = rng.integers(0, 2, (6, 1)).astype(float)
    s = 1 / (1 + np.exp(-Z[:, :1]))
    bce = -(t * np.log(s) + (1 - t) * np.log(1 - s))[:, 0]
    loss, dZ = ref.binary_cross_entropy(Z[:, :1], t)
    assert loss == pytest.approx(bce.mean())
    np.testing.assert_allclose(dZ, (s - t) / 6)

    T = rng.normal(size=(6, 3))
    loss, dZ = ref.mse(Z, T, w)
    assert loss == pytest.approx((w * ((Z - T) ** 2).mean(1)).sum() / w.sum())
    np.testing.assert_allclose(dZ, 2 * (Z - T) / 3 * (w / w.sum())[:, None])
    hl, hdZ = ref.half_mse(Z, T, w)
    assert hl == pytest.approx(loss / 2)
    np.testing.assert_allclose(hdZ, dZ / 2)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_losses_float32(loss):
    rng = np.random.default_rng(6)
    T = targets(loss, 4, rng, np.float32)
    Z = rng.normal(size=T.shape).astype(np.float32)
    value, dZ = ref.LOSSES[loss](Z, T, np.ones(4))
    assert isinstance(value, float) and dZ.dtype == np.float32


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, (3, 4), elements=st.floats(-1e3, 1e3)), st.floats(-1e3, 1e3))
def test_softmax_properties(Z, shift):
    P = ref.softmax(Z)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(1), 1.0)
    np.testing.assert_allclose(ref.softmax(Z + shift), P, atol=1e-12)
    s = ref.sigmoid(Z)
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(s + ref.sigmoid(-Z), 1.0)


# ---------------------------------------------------------------- layers

def test_dense_no_bias_keeps_zero_bias():
    rng = np.random.default_rng(7)
    layer = ref.Dense(rng.normal(size=(3, 2)), activation="tanh", use_bias=False)
    model = ref.Model([layer], "mse")
    opt = ref.Adam(lr=0.1)
    for _ in range(3):
        model.train_step(rng.normal(size=(4, 3)), rng.normal(size=(4, 2)), opt)
    np.testing.assert_array_equal(layer.b, 0.0)
    np.testing.assert_array_equal(layer.db, 0.0)
    assert model.is_weight() == [True, False]


def test_batchnorm_forward_and_running_stats():
    rng = np.random.default_rng(8)
    X = rng.normal(loc=3.0, scale=2.0, size=(10, 4))
    bn = batchnorm(rng, 4)
    rm, rv = bn.running_mean, bn.running_var
    Y = bn.forward(X, training=True)
    mu, var = X.mean(0), X.var(0)
    np.testing.assert_allclose(Y, bn.gamma * (X - mu) / np.sqrt(var + 1e-5) + bn.beta)
    assert bn.running_mean is rm and bn.running_var is rv  # updated in place
    np.testing.assert_allclose(rm, 0.1 * mu)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * var)
    Yi = bn.forward(X, training=False)
    np.testing.assert_allclose(Yi, (X - rm) / np.sqrt(rv + 1e-5) * bn.gamma + bn.beta)
    np.testing.assert_allclose(rm, 0.1 * mu)  # inference leaves stats alone
    assert bn.is_weight == [False, False]


def test_dropout():
    X = np.arange(12.0).reshape(3, 4)
    mask = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=bool)
    d = ref.Dropout(0.5, seed=0)
    np.testing.assert_array_equal(d.forward(X, training=False), X)
    np.testing.assert_array_equal(d.backward(X), X)
    np.testing.assert_array_equal(d.forward(X, training=True, mask=mask), X * mask * 2)
    np.testing.assert_array_equal(d.backward(np.ones_like(X)), mask * 2.0)
    Y = d.forward(np.ones((200, 50)), training=True)
    assert set(np.unique(Y)) <= {0.0, 2.0}
    assert 0.4 < (Y == 0).mean() < 0.6
    assert d.forward(X.astype(np.float32), training=True).dtype == np.float32
    assert d.params() == [] and d.grads() == []


# ---------------------------------------------------------------- optimizers

W0 = np.array([0.5, -1.0, 2.0])
G1 = np.array([0.1, -0.2, 0.3])
G2 = np.array([-0.4, 0.5, 0.6])


def run_two_steps(opt, is_weight=True):
    w = W0.copy()
    opt.step([w], [G1], [is_weight])
    opt.step([w], [G2], [is_weight])
    assert opt.t == 2
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd(nesterov):
    lr, mu = 0.1, 0.9
    w, v = W0.copy(), np.zeros(3)
    for g in (G1, G2):
        v = mu * v - lr * g
        w = w + (mu * v - lr * g if nesterov else v)
    np.testing.assert_allclose(run_two_steps(ref.SGD(lr, mu, nesterov)), w, rtol=1e-14)
    np.testing.assert_allclose(run_two_steps(ref.SGD(lr)), W0 - lr * G1 - lr * G2)


def test_momentum():
    v1 = 0.1 * G1
    v2 = 0.9 * v1 + 0.1 * G2
    np.testing.assert_allclose(run_two_steps(ref.Momentum(0.5, 0.9)), W0 - 0.5 * v1 - 0.5 * v2)


def test_rmsprop():
    s1 = 0.1 * G1**2
    w1 = W0 - 0.01 * G1 / (np.sqrt(s1) + 1e-8)
    s2 = 0.9 * s1 + 0.1 * G2**2
    w2 = w1 - 0.01 * G2 / (np.sqrt(s2) + 1e-8)
    np.testing.assert_allclose(run_two_steps(ref.RMSProp(0.01)), w2, rtol=1e-14)


def adam_by_hand(decay=0.0, sk=False):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, m, v = W0.copy(), np.zeros(3), np.zeros(3)
    for t, g in ((1, G1), (2, G2)):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if sk:
            w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        else:
            mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
            w = w - lr * (mhat / (np.sqrt(vhat) + eps) + decay * w)
    return w


def test_adam_family():
    np.testing.assert_allclose(run_two_steps(ref.Adam(0.01)), adam_by_hand(), rtol=1e-14)
    np.testing.assert_allclose(run_two_steps(ref.AdamW(0.01, weight_decay=0.1)),
                               adam_by_hand(decay=0.1), rtol=1e-14)
    # no decay on non-weights (biases)
    np.testing.assert_allclose(run_two_steps(ref.AdamW(0.01, weight_decay=0.1), False),
                               adam_by_hand(), rtol=1e-14)
    np.testing.assert_allclose(run_two_steps(ref.AdamSK(0.01)), adam_by_hand(sk=True),
                               rtol=1e-14)
    assert issubclass(ref.AdamW, ref.Adam)


@pytest.mark.parametrize("opt", [ref.SGD(0.1, 0.9, True), ref.Momentum(), ref.RMSProp(),
                                 ref.Adam(), ref.AdamW(), ref.AdamSK()])
def test_optimizers_keep_float32(opt):
    w = W0.astype(np.float32)
    opt.lr = np.float64(0.01)  # even a NumPy float64 lr must not upcast
    opt.step([w], [G1.astype(np.float32)], [True])
    assert w.dtype == np.float32
    assert all(s.dtype == np.float32 for s in opt.state[0])


# ---------------------------------------------------------------- schedules

def test_schedules():
    lr0 = 0.2
    for e in range(12):
        assert ref.InverseTimeDecay(0.5)(e, lr0) == pytest.approx(lr0 / (1 + 0.5 * e))
        assert ref.StepInverseTimeDecay(0.5, 4)(e, lr0) == pytest.approx(lr0 / (1 + 0.5 * (e // 4)))
        assert ref.ExponentialDecay(0.9)(e, lr0) == pytest.approx(lr0 * 0.9**e)
        want = 0.01 + 0.5 * (lr0 - 0.01) * (1 + math.cos(math.pi * min(e, 10) / 10))
        assert ref.CosineDecay(10, 0.01)(e, lr0) == pytest.approx(want)
    assert ref.CosineDecay(10)(0, lr0) == pytest.approx(lr0)
    assert ref.CosineDecay(10)(10, lr0) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------- model / fit

def test_init_weights():
    rng = np.random.default_rng(9)
    for init, lim in [("glorot_uniform", math.sqrt(6 / 300)), ("he_uniform", math.sqrt(6 / 100))]:
        W = ref.init_weights(rng, 100, 200, init, np.float32)
        assert W.shape == (100, 200) and W.dtype == np.float32
        assert np.abs(W).max() <= lim and np.abs(W).max() > 0.95 * lim
    for init, std in [("glorot_normal", math.sqrt(2 / 300)), ("he_normal", math.sqrt(2 / 100))]:
        W = ref.init_weights(rng, 100, 200, init, np.float64)
        assert W.std() == pytest.approx(std, rel=0.05)
    a = ref.init_weights(np.random.default_rng(1), 3, 4, "he_normal", np.float32)
    b = np.random.default_rng(1).normal(0, math.sqrt(2 / 3), (3, 4)).astype(np.float32)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="init"):
        ref.init_weights(rng, 2, 2, "zeros", np.float64)


def test_unknown_loss():
    with pytest.raises(ValueError, match="loss"):
        ref.Model([], "hinge")


def test_l2_term_and_per_row():
    rng = np.random.default_rng(10)
    X, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    layers = [dense(rng, 3, 4, "tanh"), batchnorm(rng, 4), dense(rng, 4, 2)]
    plain = ref.Model(layers, "mse").loss_and_grads(X, T)
    sq = sum(np.sum(layer.W**2) for layer in (layers[0], layers[2]))
    assert ref.Model(layers, "mse", l2=0.3).loss_and_grads(X, T) == pytest.approx(plain + 0.15 * sq)
    per_row = ref.Model(layers, "mse", l2=0.3, l2_per_row=True).loss_and_grads(X, T)
    assert per_row == pytest.approx(plain + 0.15 * sq / 5)


def test_fit_matches_manual_loop_and_schedule():
    rng = np.random.default_rng(11)
    X, T = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    sw = rng.uniform(0.5, 2, 10)
    m1 = ref.Model([dense(np.random.default_rng(0), 3, 2, "tanh")], "mse")
    m2 = ref.Model([dense(np.random.default_rng(0), 3, 2, "tanh")], "mse")
    o1, o2 = ref.SGD(0.1), ref.SGD(0.1)
    sched = ref.ExponentialDecay(0.5)
    out = m1.fit(X, T, o1, batch_size=4, epochs=3, seed=5, schedule=sched, sample_weight=sw)
    perm_rng, losses = np.random.default_rng([5, 1]), []   # fastnn's shuffle stream
    for epoch in range(3):
        o2.lr = 0.1 * 0.5**epoch
        order = perm_rng.permutation(10)
        for idx in (order[:4], order[4:8], order[8:]):
            losses.append(m2.train_step(X[idx], T[idx], o2, sw[idx]))
    assert out["batch_losses"] == losses
    assert o1.lr == pytest.approx(0.025) and o1.t == 9
    np.testing.assert_array_equal(m1.params()[0], m2.params()[0])
    b = out["batch_losses"]
    assert out["epoch_loss"][0] == pytest.approx((4 * b[0] + 4 * b[1] + 2 * b[2]) / 10)
    assert len(out["epoch_loss"]) == 3
    m3 = ref.Model([dense(np.random.default_rng(0), 3, 2, "tanh")], "mse")
    first = m3.fit(X, T, ref.SGD(0.1), batch_size=10, epochs=1, shuffle=False)
    assert first["batch_losses"][0] == pytest.approx(
        ref.Model([dense(np.random.default_rng(0), 3, 2, "tanh")], "mse").loss_and_grads(X, T))


def test_float32_training_stays_float32():
    rng = np.random.default_rng(12)
    model = make_model("relu", "softmax_cross_entropy", rng, bn=True, dtype=np.float32)
    model.layers.insert(3, ref.Dropout(0.2, seed=1))
    X = rng.normal(size=(16, 3)).astype(np.float32)
    T = targets("softmax_cross_entropy", 16, rng, np.float32)
    out = model.fit(X, T, ref.AdamW(0.01), batch_size=8, epochs=2,
                    sample_weight=np.ones(16, np.float32))
    assert all(isinstance(v, float) for v in out["batch_losses"])
    assert all(p.dtype == np.float32 for p in model.params())
    assert all(g.dtype == np.float32 for g in model.grads())
    assert model.forward(X).dtype == np.float32


def test_learns_and_table():
    X = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
    T = (X[:, :1] * X[:, 2:]).astype(float)  # x0 AND x2
    rng = np.random.default_rng(0)
    model = ref.Model([dense(rng, 3, 2, "sigmoid"), dense(rng, 2, 1)], "binary_cross_entropy")
    opt = ref.Adam(lr=0.1)
    for _ in range(300):
        loss = model.train_step(X, T, opt)
    assert loss < 0.1
    pred = ref.sigmoid(model.forward(X)) > 0.5
    np.testing.assert_array_equal(pred, T > 0.5)


def test_loss_decreases_on_blobs():
    rng = np.random.default_rng(13)
    centers = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])
    y = rng.integers(0, 3, 300)
    X = centers[y] + rng.normal(size=(300, 2))
    T = np.eye(3)[y]
    model = ref.Model([dense(rng, 2, 16, "relu"), dense(rng, 16, 3)],
                      "softmax_cross_entropy", l2=1e-4)
    out = model.fit(X, T, ref.SGD(0.05, momentum=0.9), batch_size=32, epochs=10)
    ep = out["epoch_loss"]
    assert ep[-1] < 0.5 * ep[0]
    # momentum may bump the loss up for an epoch (it does at epoch 3 with this
    # shuffle stream), but it ends at its lowest, far below where it started
    assert max(ep[1:]) < 0.1 * ep[0] and ep[-1] == min(ep)
    acc = (ref.softmax(model.forward(X)).argmax(1) == y).mean()
    assert acc > 0.95


# ---------------------------------------------------------------- fused output layers

def test_fused_output_layers_apply_their_link_once():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(6, 3))
    W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 3))
    b1, b2 = rng.normal(size=4), rng.normal(size=3)

    def model(last_act, loss, k=3):
        return ref.Model([ref.Dense(W1.copy(), b1.copy(), "tanh"),
                          ref.Dense(W2[:, :k].copy(), b2[:k].copy(), last_act)], loss)

    for act, loss, k in [("softmax", "softmax_cross_entropy", 3),
                         ("sigmoid", "binary_cross_entropy", 2),
                         ("logistic", "binary_cross_entropy", 1)]:
        T = np.eye(k)[rng.integers(0, k, 6)] if act == "softmax" else \
            rng.integers(0, 2, (6, k)).astype(float)
        fused, linear = model(act, loss, k), model("identity", loss, k)
        assert fused.layers[-1].fused and not linear.layers[-1].fused
        np.testing.assert_array_equal(fused.forward(X), linear.forward(X))   # logits
        assert fused.loss_and_grads(X, T) == linear.loss_and_grads(X, T)
        for a, b in zip(fused.grads(), linear.grads()):
            np.testing.assert_array_equal(a, b)
        assert fd_check(fused, X, T) < 1e-6
    # sigmoid with another loss is an ordinary activation
    plain = model("sigmoid", "mse", 2)
    assert not plain.layers[-1].fused
    assert np.all((plain.forward(X) > 0) & (plain.forward(X) < 1))
    # a standalone softmax Dense gives probabilities; it has no backward of its own
    layer = ref.Dense(W2.copy(), b2.copy(), "softmax")
    np.testing.assert_allclose(layer.forward(X @ W1), ref.softmax(X @ W1 @ W2 + b2))
    with pytest.raises(ValueError, match="softmax"):
        layer.backward(np.ones((6, 3)))


def test_softmax_misuse_raises():
    rng = np.random.default_rng(15)
    with pytest.raises(ValueError, match=r"layers\[0\].*only allowed on the last layer"):
        ref.Model([dense(rng, 3, 4, "softmax"), dense(rng, 4, 3)], "softmax_cross_entropy")
    for loss in ["mse", "binary_cross_entropy", "half_mse"]:
        with pytest.raises(ValueError, match=f"loss='{loss}'.*softmax_cross_entropy"):
            ref.Model([dense(rng, 3, 4, "tanh"), dense(rng, 4, 3, "softmax")], loss)
    with pytest.raises(ValueError, match="activation"):
        ref.activation("softmax", np.zeros(3))    # not an elementwise activation


# ---------------------------------------------------------------- dropout mask

def test_dropout_keep_is_a_pure_hash():
    keep = ref.dropout_keep(3, 5, 2, (40, 30), 0.3)
    assert keep.shape == (40, 30) and keep.dtype == bool
    assert 0.6 < keep.mean() < 0.8
    np.testing.assert_array_equal(keep, ref.dropout_keep(3, 5, 2, (40, 30), 0.3))
    for other in [(4, 5, 2), (3, 6, 2), (3, 5, 1)]:       # seed, step, layer all matter
        assert not np.array_equal(keep, ref.dropout_keep(*other, (40, 30), 0.3))
    assert ref.dropout_keep(3, 5, 2, (40, 30), 0.0).all()
    # a scalar check of the formula, in Python ints
    base = ref.mix64((3 * ref.GOLDEN + 5 * ref.STEP_MUL + 2 * ref.LAYER_MUL) % 2**64)
    i, j = 7, 11
    u = (ref.mix64((base + (j * 40 + i) * ref.GOLDEN) % 2**64) >> 11) / 2**53
    assert keep[i, j] == (u >= 0.3)


def test_dropout_layer_masks():
    X = np.arange(1.0, 13.0).reshape(3, 4)
    d = ref.Dropout(0.5, seed=9, layer=1)
    Y = d.forward(X, training=True, step=4)
    np.testing.assert_array_equal(Y, X * ref.dropout_keep(9, 4, 1, (3, 4), 0.5) * 2)
    np.testing.assert_array_equal(d.backward(np.ones_like(X)), (Y != 0) * 2.0)
    np.testing.assert_array_equal(d.forward(X, training=False), X)
    mask = np.ones((3, 4), bool)
    np.testing.assert_array_equal(d.forward(X, training=True, mask=mask, step=4), 2 * X)
    with pytest.raises(ValueError, match="step"):
        d.forward(X, training=True)
    with pytest.raises(ValueError, match="seed"):
        ref.Dropout(0.5, layer=1)
    # the Model hands its Dropout layers step + 1, and counts train steps
    rng = np.random.default_rng(16)
    model = ref.Model([dense(rng, 4, 5, "tanh"), ref.Dropout(0.4, seed=9, layer=1),
                       dense(rng, 5, 2)], "mse")
    assert model.step == 0
    Xb, T = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    for step in (1, 2):
        model.train_step(Xb, T, ref.SGD(0.1))
        np.testing.assert_array_equal(model.layers[1].scale != 0,
                                      ref.dropout_keep(9, step, 1, (6, 5), 0.4))
    assert model.step == 2


# ---------------------------------------------------------------- init "auto"

def test_init_auto():
    for act, init in [("relu", "he_uniform"), ("gelu", "he_uniform"), ("selu", "he_uniform"),
                      ("tanh", "glorot_uniform"), ("identity", "glorot_uniform"),
                      ("logistic", "glorot_uniform"), ("softmax", "glorot_uniform")]:
        a = ref.init_weights(np.random.default_rng(2), 5, 3, "auto", np.float64, activation=act)
        b = ref.init_weights(np.random.default_rng(2), 5, 3, init, np.float64)
        np.testing.assert_array_equal(a, b)
    assert ref.RELU_FAMILY == {"relu", "leaky_relu", "elu", "selu", "gelu"}


# ---------------------------------------------------------------- against fastnn

def _core():
    """fastnn and the core test helpers (the test skips without fastnn)."""
    fnn = pytest.importorskip("fastnn")
    from tests import _core_helpers
    return fnn, _core_helpers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_reproduces_fastnn_initial_weights(dtype):
    """Sequential(seed=s) draws each Dense W in layer order from one
    default_rng(s); biases, BatchNorm and Dropout draw nothing."""
    fnn, _ = _core()
    layers = [fnn.Dense(6, activation="relu"), fnn.BatchNorm(),
              fnn.Dense(5, activation="tanh", init="glorot_normal"), fnn.Dropout(0.2),
              fnn.Dense(4, activation="leaky_relu", init="he_normal", use_bias=False),
              fnn.Dense(4, activation="logistic"), fnn.Dense(3, activation="softmax")]
    m = fnn.Sequential(layers, input_dim=4, dtype=dtype, seed=11)
    rng, width = np.random.default_rng(11), 4
    for layer in m.layers:
        if isinstance(layer, fnn.Dense):
            W = ref.init_weights(rng, width, layer.units, layer.init, np.dtype(dtype),
                                 activation=layer.activation)
            np.testing.assert_array_equal(W, layer.W)
            assert layer.b is None or not layer.b.any()
            width = layer.units
        elif isinstance(layer, fnn.BatchNorm):
            assert (layer.gamma == 1).all() and not layer.beta.any()
            assert not layer.running_mean.any() and (layer.running_var == 1).all()


@pytest.mark.parametrize("act, loss, k", [("softmax", "softmax_cross_entropy", 3),
                                          ("sigmoid", "binary_cross_entropy", 2),
                                          ("sigmoid", "mse", 2)])
def test_fused_output_one_step_matches_fastnn(act, loss, k):
    fnn, h = _core()
    rng = np.random.default_rng(17)
    m = fnn.Sequential([fnn.Dense(5, activation="tanh"), fnn.Dense(k, activation=act)],
                       input_dim=3, dtype="float64", seed=3)
    m.compile(loss, fnn.SGD(0.1), l2=0.01)
    X = rng.normal(size=(9, 3))
    T, y = h.targets(loss, rng, 9, k, np.float64)
    r = ref.from_model(m)
    assert r.layers[-1].fused == (loss != "mse")
    np.testing.assert_allclose(r.forward(X), m._raw_outputs(X), rtol=1e-12)
    loss_value, g, _ = h.compiled_loss_and_grads(m, X, T)
    assert r.loss_and_grads(X, T) == pytest.approx(loss_value, rel=1e-12)
    np.testing.assert_allclose(h.reference_flat_grads(r), g, rtol=1e-10, atol=1e-13)
    r.train_step(X, T, ref.from_optimizer(m.optimizer))
    m.fit(X, y, batch_size=9, epochs=1, shuffle=False)
    np.testing.assert_allclose(h.reference_flat(r), m.get_weights(), rtol=1e-12, atol=1e-14)


def test_dropout_mask_matches_the_kernel():
    fnn, h = _core()
    from fastnn.kernels.norm import dropout_mask
    for seed in (0, 5, 2**63 - 1):
        m = fnn.Sequential([fnn.Dense(6, activation="tanh"), fnn.Dropout(0.3),
                            fnn.Dense(5, activation="relu"), fnn.Dropout(0.6), fnn.Dense(2)],
                           input_dim=3, dtype="float64", seed=seed)
        m.compile("mse", fnn.SGD(0.1))
        X, T = np.ones((13, 3)), np.zeros((13, 2))
        for step in (1, 2, 1000):
            _, _, masks = h.compiled_loss_and_grads(m, X, T, step=step)
            assert set(masks) == {1, 3}
            for l, mask in masks.items():
                want = ref.dropout_keep(seed, step, l, mask.shape, m.layers[l].rate)
                np.testing.assert_array_equal(mask, want)
    # rows 5..9 of a 13-row batch, as a row chunk computes them
    M = np.zeros(4 * 5)
    dropout_mask(M, 0.5, 7, 3, 2, 5, 5, 13)
    np.testing.assert_array_equal(M.reshape(4, 5).T > 0,
                                  ref.dropout_keep(7, 3, 2, (13, 4), 0.5)[5:10])


def _dropout_net(fnn, kind):
    if kind == "batchnorm":
        layers = [fnn.Dense(8, activation="relu", use_bias=False), fnn.BatchNorm(),
                  fnn.Dropout(0.25), fnn.Dense(1, activation="sigmoid")]
        return layers, "binary_cross_entropy", 1
    layers = [fnn.Dense(8, activation="tanh"), fnn.Dropout(0.3),
              fnn.Dense(6, activation="relu"), fnn.Dropout(0.2),
              fnn.Dense(3, activation="softmax")]
    return layers, "softmax_cross_entropy", 3


@pytest.mark.parametrize("kind", ["plain", "batchnorm", "chunked"])
def test_shuffled_fit_with_dropout_matches_fastnn(kind, monkeypatch):
    """Same seed, same rows in the same order, same dropout masks: the same
    training, whole batches or (chunked) row chunks over a transposed,
    column-split first layer. 45 rows in batches of 16: 16, 16, 13."""
    fnn, h = _core()
    from fastnn import model as fmodel
    if kind == "chunked":
        for name, value in [("TRANSPOSE_MIN_WEIGHTS", 1), ("MIN_CHUNK_ROWS", 4),
                            ("MIN_CHUNK_MACS", 1), ("MIN_COL_WIDTH", 1)]:
            monkeypatch.setattr(fmodel, name, value)
    rng = np.random.default_rng(18)
    layers, loss, k = _dropout_net(fnn, kind)
    m = fnn.Sequential(layers, input_dim=4, dtype="float64", seed=21)
    m.compile(loss, fnn.Adam(0.01), l2=0.001)
    X = rng.normal(size=(45, 4))
    T, y = h.targets(loss, rng, 45, k, np.float64)
    r = ref.from_model(m)
    hist = m.fit(X, y, batch_size=16, epochs=3, shuffle=True)
    out = r.fit(X, T, ref.from_optimizer(m.optimizer), 16, 3, shuffle=True, seed=m.seed)
    if kind == "chunked":
        assert m._spec[0, 9] == 1 and m._buffers.n_chunks == 4   # K_WT: transposed
        assert m._buffers.col_parts == 4
    assert r.step == int(m._opt_state["t"][0]) == 9
    np.testing.assert_allclose(out["batch_losses"], hist.batch_losses, rtol=1e-10)
    np.testing.assert_allclose(h.reference_flat(r), m.get_weights(), rtol=1e-10, atol=1e-12)
    for a, b in zip(r.layers, m.layers):
        if isinstance(b, fnn.BatchNorm):
            np.testing.assert_allclose(a.running_mean, b.running_mean, rtol=1e-10)
            np.testing.assert_allclose(a.running_var, b.running_var, rtol=1e-10)


def test_from_model_round_trip():
    fnn, h = _core()
    rng = np.random.default_rng(19)
    m = fnn.Sequential([fnn.Dense(6, activation="relu"), fnn.BatchNorm(momentum=0.8),
                        fnn.Dropout(0.3), fnn.Dense(2, activation="sigmoid")],
                       input_dim=3, dtype="float64", seed=4)
    with pytest.raises(ValueError, match="compiled"):
        ref.from_model(m)
    m.compile("binary_cross_entropy", fnn.SGD(0.05), l2=0.01)
    assert ref.from_model(m).step == 0
    X = rng.normal(size=(30, 3))
    T, y = h.targets("binary_cross_entropy", rng, 30, 2, np.float64)
    m.fit(X, y, batch_size=8, epochs=2)                 # 8 steps
    r = ref.from_model(m)
    assert [type(layer).__name__ for layer in r.layers] == ["Dense", "BatchNorm", "Dropout",
                                                            "Dense"]
    assert r.step == 8 and r.loss == "binary_cross_entropy" and r.l2 == 0.01
    assert r.l2_per_row is False and r.layers[-1].fused
    assert r.layers[0].activation == "relu" and r.layers[-1].activation == "sigmoid"
    drop, bn = r.layers[2], r.layers[1]
    assert (drop.rate, drop.seed, drop.layer) == (0.3, m.seed, 2)
    assert (bn.momentum, bn.eps) == (0.8, 1e-5)
    np.testing.assert_array_equal(h.reference_flat(r), m.get_weights())
    np.testing.assert_array_equal(bn.running_mean, m.layers[1].running_mean)
    np.testing.assert_array_equal(bn.running_var, m.layers[1].running_var)
    r.layers[0].W[...] = 0                               # copies, not views
    bn.running_mean[...] = 0
    assert m.layers[0].W.any() and m.layers[1].running_mean.any()
    # the mirror continues where fastnn is: step 9's dropout mask, same update
    r = ref.from_model(m)
    r.train_step(X[:8], T[:8], ref.SGD(0.05))            # plain SGD keeps no state
    m.fit(X[:8], y[:8], batch_size=8, epochs=1, shuffle=False)
    np.testing.assert_allclose(h.reference_flat(r), m.get_weights(), rtol=1e-12, atol=1e-14)
    fixed = {2: np.ones((8, 6), bool)}
    assert ref.from_model(m, fixed).layers[2].fixed_mask is fixed[2]


def test_from_optimizer():
    fnn, _ = _core()
    from fastnn.optimizers import _AdamSK
    cases = [(fnn.SGD(0.1, momentum=0.5, nesterov=True), ref.SGD),
             (fnn.Momentum(0.2, beta=0.7), ref.Momentum), (fnn.RMSProp(0.3, rho=0.8), ref.RMSProp),
             (fnn.Adam(0.01, beta1=0.8), ref.Adam), (fnn.AdamW(0.01, weight_decay=0.2), ref.AdamW),
             (_AdamSK(0.02), ref.AdamSK)]
    for opt, cls in cases:
        mirror = ref.from_optimizer(opt)
        assert type(mirror) is cls and mirror.t == 0
        for key, value in opt.get_config().items():
            assert getattr(mirror, key) == value
    with pytest.raises(ValueError, match="reference optimizer"):
        ref.from_optimizer(object())
