"""Training through the compiled loop agrees with fastnn.reference: every
optimizer, every schedule, minibatch order and partial batches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn as fnn
from fastnn import optimizers as fopt
from fastnn import reference as ref
from tests._core_helpers import (
    ACTIVATIONS,
    reference_flat,
    reference_optimizer,
    targets,
    to_reference,
)

OPTIMIZERS = [
    lambda: fnn.SGD(lr=0.05),
    lambda: fnn.SGD(lr=0.05, momentum=0.9),
    lambda: fnn.SGD(lr=0.05, momentum=0.8, nesterov=True),
    lambda: fnn.Momentum(lr=0.05, beta=0.8),
    lambda: fnn.RMSProp(lr=0.01),
    lambda: fnn.Adam(lr=0.01),
    lambda: fnn.AdamW(lr=0.01, weight_decay=0.1),
    lambda: fopt._AdamSK(lr=0.01),
]
LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mse"]
# For the property test the adaptive optimizers get eps=1e-3: an update
# lr*g/(sqrt(s)+eps) turns an absolute rounding error in g into one up to
# lr/eps times larger, and random tiny networks (BatchNorm over two rows makes
# xhat = +-1, so weight gradients are differences that cancel) produce
# gradients whose rounding error, times lr/1e-8, would exceed any sane tolerance.
WELL_CONDITIONED = [
    lambda: fnn.SGD(lr=0.05),
    lambda: fnn.SGD(lr=0.05, momentum=0.9),
    lambda: fnn.SGD(lr=0.05, momentum=0.8, nesterov=True),
    lambda: fnn.Momentum(lr=0.05, beta=0.8),
    lambda: fnn.RMSProp(lr=0.01, eps=1e-3),
    lambda: fnn.Adam(lr=0.01, eps=1e-3),
    lambda: fnn.AdamW(lr=0.01, weight_decay=0.1, eps=1e-3),
    lambda: fopt._AdamSK(lr=0.01, eps=1e-3),
]


def _build(widths, acts, loss, k, dtype, seed, bn=False, l2=0.0, opt=None):
    layers = []
    for i, (w, a) in enumerate(zip(widths, acts)):
        # a bias right before BatchNorm has a zero gradient in exact arithmetic;
        # adaptive optimizers would amplify its rounding noise
        layers.append(fnn.Dense(w, activation=a, use_bias=not (bn and i == 0)))
        if bn and i == 0:
            layers.append(fnn.BatchNorm())
    layers.append(fnn.Dense(k))
    m = fnn.Sequential(layers, input_dim=None, dtype=dtype, seed=seed)
    m.compile(loss=loss, optimizer=opt or fnn.SGD(lr=0.05), l2=l2)
    return m


def _run_both(m, X, y, T, epochs, batch_size, schedule=None):
    """Fit fastnn (shuffle off) and the reference from the same initial weights."""
    m._build(X.shape[1])
    r = to_reference(m)
    ropt = reference_optimizer(m.optimizer)
    h = m.fit(X, y, batch_size=batch_size, epochs=epochs, shuffle=False,
              lr_schedule=schedule)
    out = r.fit(X.astype(m.dtype), T, ropt, batch_size, epochs, shuffle=False,
                schedule=schedule)
    return h, out, r


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 6), widths=st.lists(st.integers(1, 9), min_size=0, max_size=2),
       act=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES),
       opt=st.integers(0, len(WELL_CONDITIONED) - 1), n=st.integers(1, 40),
       batch=st.integers(1, 16), bn=st.booleans(), seed=st.integers(0, 1000))
def test_float64_steps_match_reference(n_in, widths, act, loss, opt, n, batch, bn, seed):
    rng = np.random.default_rng(seed)
    k = 3 if loss == "softmax_cross_entropy" else 2
    X = rng.normal(size=(n, n_in))
    T, y = targets(loss, rng, n, k, np.float64)
    m = _build(widths, [act] * len(widths), loss, k, "float64", seed, bn=bn and bool(widths),
               l2=0.01, opt=WELL_CONDITIONED[opt]())
    if loss == "softmax_cross_entropy":
        y = T            # one-hot rows: every class present or not
    h, out, r = _run_both(m, X, y, T, epochs=2, batch_size=batch)
    np.testing.assert_allclose(h.batch_losses, out["batch_losses"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_float32_training_matches_reference(make_opt):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    T, y = targets("softmax_cross_entropy", rng, 64, 3, np.float32)
    m = _build([8], ["tanh"], "softmax_cross_entropy", 3, "float32", 0, l2=1e-3,
               opt=make_opt())
    h, out, r = _run_both(m, X, y, T, epochs=2, batch_size=16)
    np.testing.assert_allclose(h.batch_losses, out["batch_losses"], rtol=1e-5)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_batches_split_into_row_chunks_match_reference(make_opt, loss):
    """Batches of 128 rows on this network train as 2 row chunks (kernels/
    chunked.py; the 44-row last batch whole): same steps as the reference."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 30))
    k = 3 if loss == "softmax_cross_entropy" else 2
    T, y = targets(loss, rng, 300, k, np.float64)
    m = _build([96, 48], ["tanh", "relu"], loss, k, "float64", 0, l2=0.01, opt=make_opt())
    h, out, r = _run_both(m, X, y, T, epochs=2, batch_size=128)
    assert m._buffers.n_chunks == 2
    np.testing.assert_allclose(h.batch_losses, out["batch_losses"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-9, atol=1e-11)


SCHEDULES = [
    fnn.schedules.InverseTimeDecay(0.5),
    fnn.schedules.StepInverseTimeDecay(1.0, interval=2),
    fnn.schedules.ExponentialDecay(0.7),
    fnn.schedules.CosineDecay(3, min_lr=0.001),
    lambda epoch, lr0: lr0 * (0.5 if epoch % 2 else 1.0),
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_match_reference(schedule):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 3))
    T, y = targets("mse", rng, 50, 2, np.float64)
    m = _build([6], ["relu"], "mse", 2, "float64", 3, opt=fnn.Adam(lr=0.01))
    h, out, r = _run_both(m, X, y, T, epochs=5, batch_size=8, schedule=schedule)
    assert h.history["lr"] == pytest.approx([schedule(e, 0.01) for e in range(5)], rel=1e-15)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-10, atol=1e-12)
    # the epoch count goes on across fit calls
    h2 = m.fit(X, y, batch_size=8, epochs=2, shuffle=False, lr_schedule=schedule)
    assert h2.history["lr"] == pytest.approx([schedule(e, 0.01) for e in (5, 6)], rel=1e-15)


def test_a_schedule_is_asked_once_per_epoch():
    """A callable schedule runs once per epoch, with the epoch count going on
    across fit calls (a fit asks for all its epochs before training, so a bad
    rate fails the call before the model changes)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    T, y = targets("mse", rng, 40, 2, np.float64)
    m = _build([4], ["tanh"], "mse", 2, "float64", 1, opt=fnn.SGD(lr=0.1))
    calls = []

    def schedule(epoch, lr0):
        calls.append((epoch, lr0))
        return lr0 / (1 + epoch)
    h = m.fit(X, y, batch_size=16, epochs=3, lr_schedule=schedule)
    assert calls == [(0, 0.1), (1, 0.1), (2, 0.1)]
    assert h.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    calls.clear()
    m.fit(X, y, batch_size=16, epochs=2, lr_schedule=schedule)
    assert calls == [(3, 0.1), (4, 0.1)]


def test_keras_and_sklearn_spellings_of_fit_options():
    """verbose=True/False mean 1/0, batch_size=None means Keras's 32."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(70, 3))
    T, y = targets("mse", rng, 70, 1, np.float64)
    m = _build([4], ["tanh"], "mse", 1, "float64", 1)
    assert len(m.fit(X, y, batch_size=None, epochs=1, verbose=False).batch_losses) == 3
    assert len(m.fit(X, y, batch_size=None, epochs=1, verbose=np.False_).batch_losses) == 3


def test_schedule_formulas():
    s = fnn.schedules
    assert s.InverseTimeDecay(0.5)(4, 1.0) == pytest.approx(1 / 3)
    assert s.StepInverseTimeDecay(1.0, 3)(5, 1.0) == pytest.approx(0.5)
    assert s.ExponentialDecay(0.5)(3, 2.0) == pytest.approx(0.25)
    assert s.CosineDecay(10, 0.1)(10, 1.0) == pytest.approx(0.1)
    assert s.CosineDecay(10, 0.1)(20, 1.0) == pytest.approx(0.1)
    assert s.CosineDecay(10)(5, 1.0) == pytest.approx(0.5)


def test_shuffled_minibatches_are_the_seeded_permutations():
    """Each epoch visits every row once, in a fresh order from the seed, with a
    smaller last batch (2300 rows, batch 500: 500, 500, 500, 500, 300)."""
    rng = np.random.default_rng(4)
    n = 2300
    X = rng.normal(size=(n, 3))
    T, y = targets("mse", rng, n, 1, np.float64)
    m = _build([4], ["tanh"], "mse", 1, "float64", 7, opt=fnn.SGD(lr=0.01))
    m._build(3)
    r = to_reference(m)
    ropt = reference_optimizer(m.optimizer)
    h = m.fit(X, y, batch_size=500, epochs=3, shuffle=True)
    assert len(h.batch_losses) == 15
    perm_rng = np.random.default_rng([m.seed, 1])
    losses, orders = [], []
    for _ in range(3):
        order = perm_rng.permutation(n)
        orders.append(order)
        sizes = []
        for s in range(0, n, 500):
            idx = order[s:s + 500]
            sizes.append(len(idx))
            losses.append(r.train_step(X[idx], T[idx], ropt))
        assert sizes == [500, 500, 500, 500, 300]
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_allclose(h.batch_losses, losses, rtol=1e-10)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-10, atol=1e-12)
    # epoch loss is the row-weighted mean of the batch losses
    sizes = np.array([500, 500, 500, 500, 300])
    assert h.history["loss"][0] == pytest.approx(h.batch_losses[:5] @ sizes / n)


def test_sample_weights_match_reference():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    T, y = targets("softmax_cross_entropy", rng, 40, 3, np.float64)
    sw = rng.uniform(0, 3, 40)
    m = _build([5], ["sigmoid"], "softmax_cross_entropy", 3, "float64", 1, opt=fnn.Adam(0.01))
    m._build(3)
    r = to_reference(m)
    h = m.fit(X, y, batch_size=8, epochs=2, shuffle=False, sample_weight=sw)
    out = r.fit(X, T, ref.Adam(0.01), 8, 2, shuffle=False, sample_weight=sw)
    np.testing.assert_allclose(h.batch_losses, out["batch_losses"], rtol=1e-10)
    np.testing.assert_allclose(m._params, reference_flat(r), rtol=1e-10, atol=1e-12)


def test_same_seed_same_weights_and_different_seed_differs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)

    def run(seed):
        m = fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.Dropout(0.2),
                            fnn.Dense(2)], seed=seed)
        m.compile("softmax_cross_entropy", fnn.Adam(1e-2))
        m.fit(X, y, batch_size=32, epochs=3)
        return m.get_weights()

    a, b, c = run(1), run(1), run(2)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_weight_views_are_live_and_writable():
    m = fnn.Sequential([fnn.Dense(4, activation="tanh"), fnn.Dense(3)], input_dim=2, seed=0)
    m.compile("softmax_cross_entropy", fnn.SGD())
    assert m.layers[0].W.shape == (2, 4) and m.layers[0].b.shape == (4,)
    assert m.n_params == 2 * 4 + 4 + 4 * 3 + 3
    assert np.shares_memory(m.layers[0].W, m._params)
    m.layers[1].W[...] = 0
    m.layers[1].b[...] = [0, 5, 0]
    X = np.zeros((2, 2), np.float32)
    m.fit(X, [0, 1], epochs=0)
    assert list(m.predict(np.ones((3, 2)))) == [1, 1, 1]


def test_assigning_a_weight_attribute_writes_into_the_model():
    m = fnn.Sequential([fnn.Dense(4, activation="tanh"), fnn.BatchNorm(), fnn.Dense(3)],
                       input_dim=2, seed=0)
    m.compile("softmax_cross_entropy", fnn.SGD())
    W = m.layers[2].W
    m.layers[2].W = np.zeros((4, 3))           # float64 into the float32 view
    m.layers[2].b = [0, 5, 0]
    assert m.layers[2].W is W and not W.any()
    m.layers[1].running_var = np.full(4, 2.0)
    assert (m._state[4:] == 2).all()
    m.fit(np.zeros((2, 2), np.float32), [0, 1], epochs=0)
    assert list(m.predict(np.ones((3, 2)))) == [1, 1, 1]
    before = m._params.copy()
    with pytest.raises(ValueError, match=r"Dense.W must have shape \(4, 3\)"):
        m.layers[2].W = np.zeros((3, 4))
    with pytest.raises(TypeError, match="Dense.b"):
        m.layers[2].b = ["a", "b", "c"]
    assert m._params.tobytes() == before.tobytes()
    with pytest.raises(ValueError, match="until the model is built"):
        fnn.Dense(3).W = np.zeros((2, 3))
    plain = fnn.Sequential([fnn.Dense(2, use_bias=False)], input_dim=3)
    with pytest.raises(ValueError, match="use_bias=False"):
        plain.layers[0].b = np.zeros(2)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_owns_its_weights(how):
    import copy
    import pickle
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 30))
    y = rng.integers(0, 2, 40)
    m = fnn.Sequential([fnn.Dense(300, activation="relu"), fnn.BatchNorm(),
                        fnn.Dense(2, use_bias=False)], seed=0)   # big first layer: transposed
    m.compile("softmax_cross_entropy", fnn.Adam())
    m.fit(X, y, epochs=1)
    c = copy.deepcopy(m) if how == "deepcopy" else pickle.loads(pickle.dumps(m))
    assert np.array_equal(c.predict_proba(X), m.predict_proba(X))
    for layer in c.layers:
        for name in ("W", "b", "gamma", "beta"):
            view = getattr(layer, name, None)
            if view is not None:
                assert np.shares_memory(view, c._params)
    assert c.layers[2].b is None
    saved = m.get_weights()
    c.fit(X, y, epochs=2)
    assert m.get_weights().tobytes() == saved.tobytes()
    Z = np.maximum(X @ c.layers[0].W + c.layers[0].b, 0)      # the copy's live views
    assert not np.array_equal(Z, np.maximum(X @ m.layers[0].W + m.layers[0].b, 0))


def test_fit_continues_optimizer_state():
    """Two fits of one epoch equal one fit of two epochs (shuffle off)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 3))
    y = rng.integers(0, 3, 64)

    def model():
        m = fnn.Sequential([fnn.Dense(5, activation="relu"), fnn.Dense(3)], dtype="float64",
                           seed=4)
        m.compile("softmax_cross_entropy", fnn.Adam(0.01))
        return m

    a, b = model(), model()
    a.fit(X, y, batch_size=10, epochs=2, shuffle=False)
    b.fit(X, y, batch_size=10, epochs=1, shuffle=False)
    b.fit(X, y, batch_size=10, epochs=1, shuffle=False)
    assert a.get_weights().tobytes() == b.get_weights().tobytes()


def test_predict_proba_and_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "yes", "no")
    m = fnn.Sequential([fnn.Dense(8, activation="tanh"), fnn.Dense(2, activation="softmax")],
                       seed=0)
    m.compile("softmax_cross_entropy", fnn.Adam(0.05))
    m.fit(X, y, epochs=20)
    p = m.predict_proba(X)
    assert p.shape == (200, 2) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert set(m.predict(X)) <= {"yes", "no"}
    assert (m.predict(X) == y).mean() > 0.95
    ev = m.evaluate(X, y)
    assert set(ev) == {"loss", "accuracy"} and ev["accuracy"] > 0.95

    b = fnn.Sequential([fnn.Dense(8, activation="tanh"), fnn.Dense(1, activation="sigmoid")],
                       seed=0)
    b.compile("binary_cross_entropy", fnn.Adam(0.05))
    b.fit(X, (X[:, 0] > 0).astype(int), epochs=20)
    pb = b.predict_proba(X)
    assert pb.shape == (200, 2)
    np.testing.assert_allclose(pb.sum(axis=1), 1, rtol=1e-6)
    assert b.predict(X).shape == (200,)


def test_cosine_decay_may_reach_zero_learning_rate():
    """CosineDecay(epochs) reaches min_lr = 0 at epoch >= epochs; training goes
    on with zero updates instead of refusing the schedule."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = rng.integers(0, 3, 64)
    m = _build([5], ["tanh"], "softmax_cross_entropy", 3, "float64", 0, opt=fnn.Adam(0.01))
    schedule = fnn.schedules.CosineDecay(2)
    m.fit(X, y, epochs=2, lr_schedule=schedule)
    before = m.get_weights()
    h = m.fit(X, y, epochs=1, lr_schedule=schedule)
    assert h.history["lr"] == [0.0]
    assert m.get_weights().tobytes() == before.tobytes()


def test_predict_before_fit_is_refused_even_when_built():
    m = fnn.Sequential([fnn.Dense(3)], input_dim=2, seed=0)
    m.compile("softmax_cross_entropy")
    X = np.zeros((4, 2))
    for call in (m.predict, m.predict_proba, lambda X: m.evaluate(X, [0, 1, 2, 0])):
        with pytest.raises(ValueError, match="not fitted"):
            call(X)
    m.fit(X, [0, 1, 2, 0], epochs=0)          # fixes the labels; no update
    assert m.predict(X).shape == (4,)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_subnormal_zeroes_only_subnormals(dtype):
    from fastnn.kernels.optimizers import flush_subnormal
    tiny = np.finfo(dtype).tiny
    S = np.array([tiny / 4, -tiny / 1024, tiny, -tiny, 1.0, 0.0, np.nan, np.inf, -np.inf],
                 dtype)
    flush_subnormal(S)
    np.testing.assert_array_equal(S, np.array([0, 0, tiny, -tiny, 1, 0, np.nan, np.inf,
                                               -np.inf], dtype))


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_subnormal_optimizer_state_is_flushed_every_64_steps(make_opt, dtype):
    """A weight whose gradient stays 0 (here into a dead ReLU unit) has its
    state decay into subnormals, which made W2's update pass 2.6x slower;
    the step that is a multiple of FLUSH_EVERY sets them to 0."""
    from fastnn.kernels import optimizers as kopt
    assert kopt.FLUSH_EVERY == 64
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(dtype)
    y = rng.integers(0, 2, 64)
    m = fnn.Sequential([fnn.Dense(4, activation="relu"), fnn.Dense(2)], input_dim=3,
                       dtype=dtype, seed=0)
    m.compile(loss="softmax_cross_entropy", optimizer=make_opt())
    m.fit(X, y, batch_size=64, epochs=1, shuffle=False, verbose=0)      # state exists
    m.layers[0].W[:, 0] = 0.0           # unit 0 is dead: relu(-1) = 0 on every row,
    m.layers[0].b[0] = -1.0             # so W[:, 0] (flat 0, 4, 8) gets zero gradients
    tiny = np.finfo(dtype).tiny
    state = m._opt_state
    state["s1"][[0, 4]] = [tiny / 4, tiny / 8]     # >= 0: RMSProp keeps g^2 there
    if state["s2"].size:                # second moments are >= 0
        state["s2"][[0, 4]] = [tiny / 4, tiny / 8]
    state["t"][0] = 62
    m.fit(X, y, batch_size=64, epochs=1, shuffle=False, verbose=0)      # step 63
    m.fit(X, y, batch_size=64, epochs=1, shuffle=False, verbose=0)      # step 64
    assert state["t"][0] == 64
    for name in ("s1", "s2"):
        s = state[name]
        assert not np.any((s != 0) & (np.abs(s) < tiny)), name
        assert np.all(np.isfinite(s)), name
