"""A big first Dense layer keeps W transposed in the flat buffer
(``model.TRANSPOSE_MIN_WEIGHTS``); the kernels take it on any layer. The
public views, files and ``get_weights`` keep the untransposed order, and the
maths is unchanged."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn import model as fmodel
from fastnn.kernels.codes import K_WT
from tests._core_helpers import reference_flat, reference_flat_grads, to_reference
from tests.test_gradients import _data, _fd_check, _model
from tests.test_training import LOSSES, OPTIMIZERS, _build, _run_both, targets


@pytest.fixture
def transpose_all(monkeypatch):
    """Every Dense layer stored transposed, whatever its size and place."""
    monkeypatch.setattr(fmodel, "TRANSPOSE_MIN_WEIGHTS", 1)
    monkeypatch.setattr(fmodel, "TRANSPOSE_FIRST_ONLY", False)


def test_only_a_big_first_layer_is_transposed_and_views_keep_their_shape():
    m = fnn.Sequential([fnn.Dense(256, activation="relu"), fnn.Dense(128, activation="relu"),
                        fnn.Dense(10)], input_dim=784, seed=0)
    assert m._spec[:, K_WT].tolist() == [1, 0, 0]       # 200,704 / 32,768 / 1,280 weights
    big_hidden = fnn.Sequential([fnn.Dense(8), fnn.Dense(300), fnn.Dense(300), fnn.Dense(2)],
                                input_dim=4, seed=0)
    assert not big_hidden._spec[:, K_WT].any()         # 90,000 weights, not first
    W = m.layers[0].W
    assert W.shape == (784, 256) and W.flags.f_contiguous and W.flags.writeable
    assert np.shares_memory(W, m._params)
    assert m._blas_layers(1)[0] == 1 and m._blas_layers(64)[0] == 1


def test_transposed_model_starts_from_the_same_weights(monkeypatch):
    plain = _build([6, 5], ["tanh", "relu"], "softmax_cross_entropy", 3, "float64", 4)
    plain._build(4)
    monkeypatch.setattr(fmodel, "TRANSPOSE_MIN_WEIGHTS", 1)
    monkeypatch.setattr(fmodel, "TRANSPOSE_FIRST_ONLY", False)
    tr = _build([6, 5], ["tanh", "relu"], "softmax_cross_entropy", 3, "float64", 4)
    tr._build(4)
    assert tr._spec[:, K_WT].all() and not plain._spec[:, K_WT].any()
    for a, b in zip(plain.layers, tr.layers):
        assert a.W.tobytes() == np.ascontiguousarray(b.W).tobytes()
    assert plain.get_weights().tobytes() == tr.get_weights().tobytes()
    assert tr._params.tobytes() != plain._params.tobytes()       # really another order
    np.testing.assert_array_equal(tr._flat_order(tr.get_weights()), tr._params)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("loss", LOSSES)
def test_transposed_gradients_match_finite_differences(transpose_all, act, loss):
    m = _model(act, loss, extra=(fnn.Dropout(0.2),))
    assert m._spec[:, K_WT].sum() == 3
    X, T = _data(loss, m.n_outputs)
    err, loss_value, g, masks = _fd_check(m, X, T)
    assert err < 1e-6
    r = to_reference(m, masks)
    assert loss_value == pytest.approx(r.loss_and_grads(X, T), rel=1e-12)
    np.testing.assert_allclose(m._public_order(g), reference_flat_grads(r), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [16, 128])
def test_transposed_training_matches_reference(transpose_all, make_opt, batch_size):
    """Whole batches (16 rows) and row chunks (128 rows: 2 chunks)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 30))
    T, y = targets("softmax_cross_entropy", rng, 300, 3, np.float64)
    m = _build([96, 48], ["tanh", "relu"], "softmax_cross_entropy", 3, "float64", 0,
               l2=0.01, opt=make_opt())
    h, out, r = _run_both(m, X, y, T, epochs=2, batch_size=batch_size)
    assert m._spec[:, K_WT].all()
    assert m._buffers.n_chunks == (2 if batch_size == 128 else 1)
    np.testing.assert_allclose(h.batch_losses, out["batch_losses"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.get_weights(), reference_flat(r), rtol=1e-9, atol=1e-11)


def test_files_hold_the_public_order(tmp_path, monkeypatch):
    """A transposed model's file loads into an untransposed one (and back)
    with the same weights, optimizer state and predictions."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    monkeypatch.setattr(fmodel, "TRANSPOSE_MIN_WEIGHTS", 1)
    monkeypatch.setattr(fmodel, "TRANSPOSE_FIRST_ONLY", False)
    m = fnn.Sequential([fnn.Dense(16, activation="relu"), fnn.Dense(3)], input_dim=8, seed=1)
    m.compile(optimizer=fnn.Adam(lr=1e-2))
    m.fit(X, y, batch_size=32, epochs=2, verbose=0)
    m.save(tmp_path / "t.fnn")
    same = fnn.load(tmp_path / "t.fnn")                     # transposed again
    assert same._params.tobytes() == m._params.tobytes()
    assert same._opt_state["s1"].tobytes() == m._opt_state["s1"].tobytes()
    monkeypatch.setattr(fmodel, "TRANSPOSE_MIN_WEIGHTS", 10**9)
    plain = fnn.load(tmp_path / "t.fnn")                    # untransposed
    assert not plain._spec[:, K_WT].any()
    assert plain.get_weights().tobytes() == m.get_weights().tobytes()
    for key in ("s1", "s2"):
        assert (plain._opt_state[key].tobytes()
                == m._public_order(m._opt_state[key]).tobytes())
    np.testing.assert_allclose(plain.predict_proba(X), m.predict_proba(X), rtol=1e-5, atol=1e-7)
    # continued training agrees too (the same updates, other gemm operand order)
    plain.fit(X, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    m.fit(X, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(plain.get_weights(), m.get_weights(), rtol=1e-4, atol=1e-6)



@pytest.fixture(scope="module")
def wide_estimator():
    """An estimator whose first layer (300 x 256 weights) is stored transposed."""
    import warnings
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 300)).astype(np.float32)
    y = (X[:, :5].sum(1) > 0).astype(int) + (X[:, 5] > 1)
    est = fnn.MLPClassifier(hidden_layer_sizes=(256, 32), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert est._net._spec[:, K_WT].tolist() == [1, 0, 0]
    return est, X, y


def test_transposed_estimator_predicts_rows_independently(wide_estimator):
    est, X, _ = wide_estimator
    full = est.predict_proba(X)
    assert est.predict_proba(X[:37]).tobytes() == full[:37].tobytes()
    perm = np.random.default_rng(0).permutation(len(X))
    assert est.predict_proba(X[perm]).tobytes() == full[perm].tobytes()


@pytest.mark.parametrize("how", ["pickle", "file"])
def test_transposed_estimator_round_trips(wide_estimator, how, tmp_path):
    import pickle
    est, X, y = wide_estimator
    if how == "pickle":
        again = pickle.loads(pickle.dumps(est))
    else:
        est.save(tmp_path / "e.fnn")
        again = fnn.load(tmp_path / "e.fnn")
    assert again._net._params.tobytes() == est._net._params.tobytes()
    assert again._best_params.tobytes() == est._best_params.tobytes()
    for key in ("s1", "s2"):
        assert again._net._opt_state[key].tobytes() == est._net._opt_state[key].tobytes()
    assert again.predict_proba(X).tobytes() == est.predict_proba(X).tobytes()
    a = pickle.loads(pickle.dumps(est))          # continue both the same way
    a.partial_fit(X, y)
    again.partial_fit(X, y)
    assert again._net._params.tobytes() == a._net._params.tobytes()
