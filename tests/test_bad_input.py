"""Bad input everywhere raises ValueError/TypeError naming the argument and
leaves a fitted model bit-for-bit as it was; odd but valid inputs (read-only,
strided, Fortran-ordered, integer) are accepted and handled exactly like
C-contiguous floats. Property-based tests cover shapes, dtypes and layouts."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fnn
from fastnn import callbacks as C
from fastnn import schedules as S

N, D = 60, 3
NAN = float("nan")
INF = float("inf")


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    return X, np.where(X[:, 0] > 0, "up", "down")


def fitted_classifier():
    X, y = data()
    model = fnn.Sequential([fnn.Dense(5, activation="relu"), fnn.BatchNorm(), fnn.Dropout(0.1),
                            fnn.Dense(2)], input_dim=D, seed=0)
    model.compile(optimizer=fnn.Adam(lr=0.01), l2=1e-4)
    model.fit(X, y, epochs=2, batch_size=8)
    return model


def fitted_regressor():
    X, _ = data()
    model = fnn.Sequential([fnn.Dense(4, activation="tanh"), fnn.Dense(1)], input_dim=D, seed=0)
    model.compile(loss="mse", optimizer="sgd")
    model.fit(X, X[:, 0], epochs=1)
    return model


def snapshot(model):
    opt = model._opt_state
    return (model._params.tobytes(), model._state.tobytes(),
            tuple(opt[k].tobytes() for k in ("s1", "s2", "t")), model._epoch,
            None if model._classes is None else model._classes.tolist(), model._y_ndim,
            str(model._shuffle_rng.bit_generator.state), model.loss, model.l2,
            repr(model.optimizer), model.input_dim)


X0, Y0 = data()
Y_BIN = (X0[:, 0] > 0).astype(int)


def with_nan(a, where=(3, 1), value=NAN):
    a = np.array(a, dtype=float, copy=True)
    a[where] = value
    return a


class RaiseAtEpoch:
    """A callback that fails at the end of a given epoch (after training it)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise ValueError(f"callback failed at epoch {epoch}")
        return False


# (id, call(clf, reg), error type, words the message must contain)
CASES = [
    # ---- constructors
    ("Dense units 0", lambda c, r: fnn.Dense(0), ValueError, "units"),
    ("Dense units float", lambda c, r: fnn.Dense(2.5), TypeError, "units"),
    ("Dense activation", lambda c, r: fnn.Dense(2, activation="swish"), ValueError, "activation"),
    ("Dense activation type", lambda c, r: fnn.Dense(2, activation=None), TypeError,
     "activation"),
    ("Dense init", lambda c, r: fnn.Dense(2, init="zeros"), ValueError, "init"),
    ("Dense use_bias", lambda c, r: fnn.Dense(2, use_bias="yes"), TypeError, "use_bias"),
    ("Dropout rate 1", lambda c, r: fnn.Dropout(1.0), ValueError, "rate"),
    ("Dropout rate negative", lambda c, r: fnn.Dropout(-0.1), ValueError, "rate"),
    ("Dropout rate NaN", lambda c, r: fnn.Dropout(NAN), ValueError, "rate"),
    ("BatchNorm momentum", lambda c, r: fnn.BatchNorm(momentum=1.5), ValueError, "momentum"),
    ("BatchNorm eps", lambda c, r: fnn.BatchNorm(eps=0), ValueError, "eps"),
    ("Sequential layers", lambda c, r: fnn.Sequential("dense"), TypeError, "layers"),
    ("Sequential layer type", lambda c, r: fnn.Sequential([3]), TypeError, "layers[0]"),
    ("Sequential input_dim", lambda c, r: fnn.Sequential([fnn.Dense(2)], input_dim=0),
     ValueError, "input_dim"),
    ("Sequential dtype", lambda c, r: fnn.Sequential([fnn.Dense(2)], dtype="float16"),
     ValueError, "dtype"),
    ("Sequential dtype int", lambda c, r: fnn.Sequential([fnn.Dense(2)], dtype=np.int32),
     ValueError, "dtype"),
    ("Sequential seed", lambda c, r: fnn.Sequential([fnn.Dense(2)], seed=-1), ValueError, "seed"),
    ("Sequential empty", lambda c, r: fnn.Sequential([], input_dim=2), ValueError, "layers"),
    # ---- optimizers and schedules
    ("SGD lr 0", lambda c, r: fnn.SGD(lr=0), ValueError, "lr"),
    ("SGD lr negative", lambda c, r: fnn.SGD(lr=-0.1), ValueError, "lr"),
    ("Adam lr NaN", lambda c, r: fnn.Adam(lr=NAN), ValueError, "lr"),
    ("RMSProp lr string", lambda c, r: fnn.RMSProp(lr="0.1"), TypeError, "lr"),
    ("SGD momentum 1", lambda c, r: fnn.SGD(momentum=1.0), ValueError, "momentum"),
    ("SGD nesterov", lambda c, r: fnn.SGD(nesterov=1), TypeError, "nesterov"),
    ("Momentum beta", lambda c, r: fnn.Momentum(beta=-0.5), ValueError, "beta"),
    ("RMSProp rho", lambda c, r: fnn.RMSProp(rho=1.0), ValueError, "rho"),
    ("Adam beta2", lambda c, r: fnn.Adam(beta2=1.0), ValueError, "beta2"),
    ("Adam eps", lambda c, r: fnn.Adam(eps=0.0), ValueError, "eps"),
    ("AdamW decay", lambda c, r: fnn.AdamW(weight_decay=-1), ValueError, "weight_decay"),
    ("InverseTimeDecay", lambda c, r: S.InverseTimeDecay(-1), ValueError, "decay_rate"),
    ("StepInverseTimeDecay", lambda c, r: S.StepInverseTimeDecay(0.5, 0), ValueError,
     "interval"),
    ("ExponentialDecay", lambda c, r: S.ExponentialDecay(0), ValueError, "rate"),
    ("CosineDecay epochs", lambda c, r: S.CosineDecay(0), ValueError, "epochs"),
    ("CosineDecay min_lr", lambda c, r: S.CosineDecay(5, min_lr=NAN), ValueError, "min_lr"),
    # ---- callbacks
    ("EarlyStopping patience", lambda c, r: C.EarlyStopping(patience=-1), ValueError,
     "patience"),
    ("EarlyStopping monitor", lambda c, r: C.EarlyStopping(monitor=1), TypeError, "monitor"),
    ("EarlyStopping min_delta", lambda c, r: C.EarlyStopping(min_delta=-1), ValueError,
     "min_delta"),
    ("ModelCheckpoint path", lambda c, r: C.ModelCheckpoint(None), TypeError, "path"),
    ("ReduceLROnPlateau factor", lambda c, r: C.ReduceLROnPlateau(factor=0), ValueError,
     "factor"),
    ("CSVLogger separator", lambda c, r: C.CSVLogger("x.csv", separator=""), ValueError,
     "separator"),
    # ---- compile
    ("compile loss", lambda c, r: c.compile(loss="hinge"), ValueError, "loss"),
    ("compile optimizer name", lambda c, r: c.compile(optimizer="nadam"), ValueError,
     "optimizer"),
    ("compile optimizer type", lambda c, r: c.compile(optimizer=0.1), TypeError, "optimizer"),
    ("compile l2 negative", lambda c, r: c.compile(l2=-1e-3), ValueError, "l2"),
    ("compile l2 NaN", lambda c, r: c.compile(l2=NAN), ValueError, "l2"),
    ("compile softmax loss on 1 unit", lambda c, r: r.compile(loss="softmax_cross_entropy"),
     ValueError, "loss"),
    # ---- fit: X
    ("fit X NaN", lambda c, r: c.fit(with_nan(X0), Y0), ValueError, "X"),
    ("fit X inf", lambda c, r: c.fit(with_nan(X0, value=INF), Y0), ValueError, "X"),
    ("fit X too large for float32", lambda c, r: c.fit(X0 * 1e300, Y0), ValueError, "X"),
    ("fit X 1-D", lambda c, r: c.fit(X0[:, 0], Y0), ValueError, "X"),
    ("fit X 3-D", lambda c, r: c.fit(X0[:, :, None], Y0), ValueError, "X"),
    ("fit X empty", lambda c, r: c.fit(X0[:0], Y0[:0]), ValueError, "X"),
    ("fit X strings", lambda c, r: c.fit(X0.astype(str), Y0), TypeError, "X"),
    ("fit X objects", lambda c, r: c.fit(np.where(X0 > 0, "a", X0.astype(object)), Y0),
     TypeError, "X"),
    ("fit X object None", lambda c, r: c.fit(np.where(X0 > 0, None, X0.astype(object)), Y0),
     ValueError, "X"),
    ("fit X complex", lambda c, r: c.fit(X0 + 1j, Y0), TypeError, "X"),
    ("fit X None", lambda c, r: c.fit(None, Y0), TypeError, "X"),
    ("fit X ragged", lambda c, r: c.fit([[1.0, 2.0, 3.0], [1.0]], ["up", "down"]), ValueError,
     "X"),
    ("fit X feature count", lambda c, r: c.fit(X0[:, :2], Y0), ValueError, "X"),
    # ---- fit: y
    ("fit y length", lambda c, r: c.fit(X0, Y0[:-1]), ValueError, "y"),
    ("fit y 3-D", lambda c, r: c.fit(X0, Y0[:, None, None]), ValueError, "y"),
    ("fit y unseen label", lambda c, r: c.fit(X0, np.where(Y0 == "up", "up", "left")),
     ValueError, "y"),
    ("fit y too many classes", lambda c, r: fresh_classifier().fit(X0, np.arange(N) % 3),
     ValueError, "y"),
    ("fit y NaN regression", lambda c, r: r.fit(X0, with_nan(X0[:, 0], 4)), ValueError, "y"),
    ("fit y strings regression", lambda c, r: r.fit(X0, Y0), ValueError, "y"),
    ("fit y columns regression", lambda c, r: r.fit(X0, X0[:, :2]), ValueError, "y"),
    ("fit y binary labels", lambda c, r: fresh_binary().fit(X0, Y_BIN * 2), ValueError, "y"),
    ("fit y None", lambda c, r: c.fit(X0, None), TypeError, "y"),
    # ---- fit: other arguments
    ("fit batch_size 0", lambda c, r: c.fit(X0, Y0, batch_size=0), ValueError, "batch_size"),
    ("fit batch_size negative", lambda c, r: c.fit(X0, Y0, batch_size=-8), ValueError,
     "batch_size"),
    ("fit batch_size float", lambda c, r: c.fit(X0, Y0, batch_size=8.0), TypeError,
     "batch_size"),
    ("fit batch_size bool", lambda c, r: c.fit(X0, Y0, batch_size=True), TypeError,
     "batch_size"),
    ("fit epochs negative", lambda c, r: c.fit(X0, Y0, epochs=-1), ValueError, "epochs"),
    ("fit epochs float", lambda c, r: c.fit(X0, Y0, epochs=2.5), TypeError, "epochs"),
    ("fit shuffle", lambda c, r: c.fit(X0, Y0, shuffle="yes"), TypeError, "shuffle"),
    ("fit verbose", lambda c, r: c.fit(X0, Y0, verbose=5), ValueError, "verbose"),
    ("fit lr_schedule type", lambda c, r: c.fit(X0, Y0, lr_schedule="cosine"), TypeError,
     "lr_schedule"),
    ("fit lr_schedule NaN", lambda c, r: c.fit(X0, Y0, epochs=3,
                                               lr_schedule=lambda e, lr: NAN if e == 4 else lr),
     ValueError, "lr_schedule"),
    ("fit lr_schedule negative", lambda c, r: c.fit(X0, Y0, lr_schedule=lambda e, lr: -lr),
     ValueError, "lr_schedule"),
    ("fit lr_schedule signature", lambda c, r: c.fit(X0, Y0, lr_schedule=lambda e: 0.1),
     TypeError, "lr_schedule"),
    ("fit callbacks", lambda c, r: c.fit(X0, Y0, callbacks=[object()]), TypeError, "callbacks"),
    ("fit callback raises mid-fit", lambda c, r: c.fit(X0, Y0, epochs=4,
                                                        callbacks=[RaiseAtEpoch(3)]),
     ValueError, "callback failed"),
    ("fit callback monitor", lambda c, r: c.fit(X0, Y0, callbacks=[C.EarlyStopping()]),
     ValueError, "monitor"),
    ("fit sample_weight negative", lambda c, r: c.fit(X0, Y0, sample_weight=-np.ones(N)),
     ValueError, "sample_weight"),
    ("fit sample_weight length", lambda c, r: c.fit(X0, Y0, sample_weight=np.ones(N - 1)),
     ValueError, "sample_weight"),
    ("fit sample_weight NaN", lambda c, r: c.fit(X0, Y0, sample_weight=with_nan(np.ones(N), 2)),
     ValueError, "sample_weight"),
    ("fit sample_weight zero", lambda c, r: c.fit(X0, Y0, sample_weight=np.zeros(N)),
     ValueError, "sample_weight"),
    ("fit class_weight name", lambda c, r: c.fit(X0, Y0, class_weight="auto"), ValueError,
     "class_weight"),
    ("fit class_weight label", lambda c, r: c.fit(X0, Y0, class_weight={"left": 2.0}),
     ValueError, "class_weight"),
    ("fit class_weight negative", lambda c, r: c.fit(X0, Y0, class_weight={"up": -2.0}),
     ValueError, "class_weight"),
    ("fit class_weight type", lambda c, r: c.fit(X0, Y0, class_weight=[1, 2]), TypeError,
     "class_weight"),
    ("fit class_weight regression", lambda c, r: r.fit(X0, X0[:, 0], class_weight="balanced"),
     ValueError, "class_weight"),
    ("fit validation_split 1", lambda c, r: c.fit(X0, Y0, validation_split=1.0), ValueError,
     "validation_split"),
    ("fit validation_split negative", lambda c, r: c.fit(X0, Y0, validation_split=-0.2),
     ValueError, "validation_split"),
    ("fit validation_split NaN", lambda c, r: c.fit(X0, Y0, validation_split=NAN), ValueError,
     "validation_split"),
    ("fit validation both", lambda c, r: c.fit(X0, Y0, validation_split=0.2,
                                               validation_data=(X0, Y0)),
     ValueError, "validation_data"),
    ("fit validation_data shape", lambda c, r: c.fit(X0, Y0, validation_data=(X0,)), ValueError,
     "validation_data"),
    ("fit validation_data NaN", lambda c, r: c.fit(X0, Y0, validation_data=(with_nan(X0), Y0)),
     ValueError, "validation_data"),
    ("fit validation_data features", lambda c, r: c.fit(X0, Y0,
                                                        validation_data=(X0[:, :2], Y0)),
     ValueError, "validation_data"),
    ("fit validation_data labels", lambda c, r: c.fit(X0, Y0, validation_data=(X0, Y_BIN)),
     ValueError, "validation_data"),
    ("fit validation_data length", lambda c, r: c.fit(X0, Y0, validation_data=(X0, Y0[:5])),
     ValueError, "validation_data"),
    ("fit uncompiled", lambda c, r: fnn.Sequential([fnn.Dense(2)]).fit(X0, Y0), ValueError,
     "compile"),
    # ---- predict / evaluate
    ("predict X NaN", lambda c, r: c.predict(with_nan(X0)), ValueError, "X"),
    ("predict X 1-D", lambda c, r: c.predict(X0[0]), ValueError, "X"),
    ("predict feature count", lambda c, r: c.predict(X0[:, :2]), ValueError, "features"),
    ("predict X empty", lambda c, r: c.predict(X0[:0]), ValueError, "X"),
    ("predict X strings", lambda c, r: c.predict([["a", "b", "c"]]), TypeError, "X"),
    ("predict_proba regression", lambda c, r: r.predict_proba(X0), ValueError, "predict_proba"),
    ("predict before compile",
     lambda c, r: fnn.Sequential([fnn.Dense(2)], input_dim=D).predict(X0), ValueError,
     "compiled"),
    ("predict before fit (no input_dim)", lambda c, r: unbuilt().predict(X0), ValueError,
     "fitted"),
    ("evaluate y length", lambda c, r: c.evaluate(X0, Y0[:10]), ValueError, "y"),
    ("evaluate y unseen", lambda c, r: c.evaluate(X0, np.full(N, "sideways")), ValueError, "y"),
    ("evaluate sample_weight", lambda c, r: c.evaluate(X0, Y0, sample_weight=np.ones((N, 2))),
     ValueError, "sample_weight"),
    ("evaluate X inf", lambda c, r: r.evaluate(with_nan(X0, value=-INF), X0[:, 0]), ValueError,
     "X"),
    # ---- save / load / threads
    ("save path", lambda c, r: c.save(None), TypeError, "path"),
    ("load path", lambda c, r: fnn.load(3.5), TypeError, "path"),
    ("set_num_threads", lambda c, r: fnn.set_num_threads(0), ValueError, "n"),
]


def fresh_classifier():
    model = fnn.Sequential([fnn.Dense(2)], input_dim=D, seed=0)
    model.compile()
    return model


def fresh_binary():
    model = fnn.Sequential([fnn.Dense(1)], input_dim=D, seed=0)
    model.compile(loss="binary_cross_entropy")
    return model


def unbuilt():
    model = fnn.Sequential([fnn.Dense(2)])
    model.compile()
    return model


def test_the_table_is_big_enough():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("name, call, error, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, error, words):
    clf, reg = fitted_classifier(), fitted_regressor()
    before = snapshot(clf), snapshot(reg)
    with pytest.raises(error) as info:
        call(clf, reg)
    assert type(info.value) is error
    assert words in str(info.value), str(info.value)
    assert (snapshot(clf), snapshot(reg)) == before
    # and the models still work
    assert clf.predict(X0).shape == (N,) and reg.predict(X0).shape == (N,)


# --------------------------------------------------------------- odd valid inputs
def layouts(X):
    ro = X.copy()
    ro.flags.writeable = False
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3), X.dtype)
    wide[::2, ::3] = X
    return {"read-only": ro, "Fortran": np.asfortranarray(X),
            "strided": wide[::2, ::3], "reversed": X[::-1][::-1],
            "list": X.tolist()}


@pytest.mark.parametrize("layout", ["read-only", "Fortran", "strided", "reversed", "list"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layouts_train_and_predict_exactly_like_c_contiguous(layout, dtype):
    X, y = data()

    def train(features, labels):
        model = fnn.Sequential([fnn.Dense(4, activation="relu"), fnn.Dense(2)], input_dim=D,
                               dtype=dtype, seed=1)
        model.compile(optimizer="adam")
        model.fit(features, labels, epochs=2, batch_size=7, validation_data=(features, labels),
                  sample_weight=np.linspace(0.5, 1.5, N))
        return model
    base = train(np.ascontiguousarray(X), y)
    odd_X = layouts(X)[layout]
    odd_y = y.tolist() if layout == "list" else (y[::-1][::-1] if layout == "reversed" else y)
    model = train(odd_X, odd_y)
    assert np.array_equal(model._params, base._params)
    assert np.array_equal(model.predict_proba(odd_X), base.predict_proba(X))
    assert model.evaluate(odd_X, odd_y) == base.evaluate(X, y)


@pytest.mark.parametrize("kind", [np.int8, np.int64, np.uint16, np.bool_, np.float16, object])
def test_integer_bool_and_half_features_are_converted(kind):
    """Any numeric dtype trains and predicts as its float32 values do; an
    object array of numbers too (what a DataFrame mixing bool and float
    columns gives), as scikit-learn converts it."""
    rng = np.random.default_rng(0)
    Xi = rng.integers(0, 2, size=(50, 3)).astype(kind)
    y = Xi.astype(int).sum(axis=1) % 2
    a = fnn.Sequential([fnn.Dense(6, activation="tanh"), fnn.Dense(1)], input_dim=3, seed=0)
    b = fnn.Sequential([fnn.Dense(6, activation="tanh"), fnn.Dense(1)], input_dim=3, seed=0)
    for m in (a, b):
        m.compile(loss="binary_cross_entropy", optimizer="adam")
    a.fit(Xi, y, epochs=3)
    b.fit(Xi.astype(np.float32), y, epochs=3)
    assert np.array_equal(a._params, b._params)
    assert np.array_equal(a.predict(Xi), b.predict(Xi.astype(np.float32)))


# --------------------------------------------------------------- properties
DTYPES = [np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.float16]
LAYOUTS = ["C", "F", "strided", "read-only"]


def arrange(X, layout):
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "strided":
        big = np.zeros((X.shape[0] * 2, X.shape[1] * 2), X.dtype)
        big[1::2, ::2] = X
        return big[1::2, ::2]
    if layout == "read-only":
        X = X.copy()
        X.flags.writeable = False
    return X


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), d=st.integers(1, 5), dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(LAYOUTS), batch_size=st.integers(1, 50),
       loss=st.sampled_from(["softmax_cross_entropy", "binary_cross_entropy", "mse"]),
       model_dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 32 - 1))
def test_fit_and_predict_any_shape_dtype_layout(n, d, dtype, layout, batch_size, loss,
                                                model_dtype, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * 3).astype(dtype)
    units = {"softmax_cross_entropy": 3, "binary_cross_entropy": 1, "mse": 2}[loss]
    if loss == "mse":
        y = rng.normal(size=(n, 2))
    else:
        y = np.arange(n) % units if loss == "softmax_cross_entropy" else rng.integers(0, 2, n)
    model = fnn.Sequential([fnn.Dense(4, activation="tanh"), fnn.Dense(units)],
                           dtype=model_dtype, seed=1)
    model.compile(loss=loss, optimizer="adam")
    X_in = arrange(X, layout)
    try:
        hist = model.fit(X_in, y, batch_size=batch_size, epochs=2)
    except ValueError as e:          # too few rows for every class: a clear error
        assert loss == "softmax_cross_entropy" and n < units and "classes" in str(e)
        return
    assert len(hist.batch_losses) == 2 * -(-n // batch_size)
    pred = model.predict(X_in)
    if loss == "mse":
        assert pred.shape == (n, 2) and pred.dtype == np.dtype(model_dtype)
        assert np.isfinite(pred).all()
    else:
        assert pred.shape == (n,) and pred.dtype.kind in "iu"
        proba = model.predict_proba(X_in)
        assert proba.shape == (n, max(units, 2)) and proba.dtype == np.dtype(model_dtype)
        assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(pred, model.predict(np.ascontiguousarray(X, model_dtype)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 30), d=st.integers(1, 4), seed=st.integers(0, 2 ** 32 - 1),
       poison=st.sampled_from([NAN, INF, -INF]), target=st.sampled_from(["X", "y", "sw", "val"]))
def test_non_finite_values_anywhere_are_refused(n, d, seed, poison, target):
    rng = np.random.default_rng(seed)
    X, y, sw = rng.normal(size=(n, d)), rng.normal(size=n), np.ones(n)
    Xv = X.copy()
    where = (int(rng.integers(n)), int(rng.integers(d)))
    if target == "X":
        X[where] = poison
    elif target == "y":
        y[where[0]] = poison
    elif target == "sw":
        sw[where[0]] = poison
    else:
        Xv[where] = poison
    model = fnn.Sequential([fnn.Dense(1)], input_dim=d, seed=0)
    model.compile(loss="mse", optimizer="sgd")
    before = model._params.copy()
    argument = {"X": "X", "y": "y", "sw": "sample_weight", "val": "validation_data"}[target]
    with pytest.raises(ValueError, match=argument):
        model.fit(X, y, sample_weight=sw, validation_data=(Xv, y))
    assert np.array_equal(model._params, before) and model._opt_state is None


def test_read_only_inputs_add_no_kernel_signature():
    """Read-only arrays are copied once, not handed to the kernels (where they
    would be another Numba type, compiled again)."""
    from fastnn.kernels import KERNELS

    def frozen(a):
        a = np.array(a)
        a.flags.writeable = False
        return a
    rng = np.random.default_rng(0)
    X = frozen(rng.normal(size=(40, 3)).astype(np.float32))
    for loss, y, units in [("softmax_cross_entropy", frozen(np.eye(2)[np.arange(40) % 2]), 2),
                           ("mse", frozen(rng.normal(size=(40, 1)).astype(np.float32)), 1)]:
        model = fnn.Sequential([fnn.Dense(3, activation="tanh"), fnn.Dense(units)], seed=0)
        model.compile(loss=loss)
        model.fit(X, y, epochs=1, sample_weight=frozen(np.ones(40, np.float32)),
                  validation_data=(X, y))
        model.predict(X)
        model.evaluate(X, y)
    for kernel in KERNELS:
        assert not any("readonly" in str(sig) for sig in kernel.signatures), kernel.__name__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_check_finds_every_non_finite_value(dtype):
    """The one-pass check of converted features (the float's exponent bits)
    catches NaN, +inf and -inf at any place, and passes the largest finite
    values, subnormals and -0.0, in any layout."""
    from fastnn.data import _all_finite
    info = np.finfo(dtype)
    X = np.random.default_rng(0).normal(size=(37, 11)).astype(dtype)
    X[0, 0], X[3, 4], X[5, 6], X[7, 8] = info.max, -info.max, info.smallest_subnormal, -0.0
    assert _all_finite(X) and _all_finite(np.asfortranarray(X)) and _all_finite(X[:, ::2])
    for bad in (NAN, INF, -INF):
        for i, j in [(0, 0), (36, 10), (18, 5)]:
            Y = X.copy()
            Y[i, j] = bad
            assert not _all_finite(Y)
            assert not _all_finite(np.asfortranarray(Y)) and not _all_finite(Y[:, ::1].T)
    # the fallback (not C-contiguous) treats an overflowing sum as finite
    big = np.full((4, 3), info.max, dtype)
    assert _all_finite(big) and _all_finite(np.asfortranarray(big)[:, ::2])


def test_narrowing_matches_numpy_and_finds_every_non_finite_value():
    """float64 features for a float32 model are rounded and checked in one
    compiled pass (``data.narrowed``): the same bits as NumPy's cast, and
    non-finite exactly where the cast is (NaN, infinities, finite values
    beyond float32's range; not the largest ones that round to its max)."""
    from fastnn.data import narrowed
    f32 = np.finfo(np.float32)
    X = np.random.default_rng(0).normal(size=(37, 11)) * 10.0 ** np.arange(-40, 36, 7)
    X[0, 0], X[1, 1], X[2, 2], X[3, 3] = float(f32.max), -float(f32.max), 1e-46, -0.0
    X[4, 4] = np.nextafter(float(f32.max), np.inf)        # rounds down to float32's max
    Xc, finite = narrowed(X)
    assert finite and Xc.dtype == np.float32 and Xc.flags.c_contiguous
    assert np.array_equal(Xc.view(np.uint32), X.astype(np.float32).view(np.uint32))
    for bad in (NAN, INF, -INF, 1e39, -1e300):
        for i, j in [(0, 0), (36, 10), (18, 5)]:
            Y = X.copy()
            Y[i, j] = bad
            assert not narrowed(Y)[1]


@pytest.mark.parametrize("make", [
    lambda X: X, lambda X: np.asfortranarray(X), lambda X: X.astype(np.float32),
    lambda X: X[:, ::-1].copy()[:, ::-1],
])
def test_features_of_any_layout_train_the_same(make):
    """Features converted by the one-pass path (C-contiguous float64) and by
    NumPy (any other layout or dtype) give the same model, bit for bit."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    weights = []
    for features in (X.astype(np.float32), make(X)):
        model = fnn.Sequential([fnn.Dense(5, activation="tanh"), fnn.Dense(3)], seed=0)
        model.compile(loss="softmax_cross_entropy", optimizer=fnn.Adam())
        model.fit(features, y, epochs=2, batch_size=64)
        weights.append(model._params.copy())
    assert np.array_equal(weights[0], weights[1])
