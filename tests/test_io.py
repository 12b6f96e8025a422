"""Single-file save/load: round trips, bitwise resume, atomic writes, and a
loader that answers anything damaged or foreign with ValueError only."""

import copy
import io
import json
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import ModelCheckpoint
from fastnn.schedules import InverseTimeDecay

OPTIMIZERS = [fnn.SGD(lr=0.05), fnn.SGD(lr=0.02, momentum=0.9, nesterov=True),
              fnn.Momentum(lr=0.05), fnn.RMSProp(lr=0.01), fnn.Adam(lr=0.01),
              fnn.AdamW(lr=0.01, weight_decay=0.05)]


def data(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.array(["cat", "dog", "eel"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    return X, y


def net(optimizer, dtype="float32", seed=3):
    model = fnn.Sequential([fnn.Dense(8, activation="relu"), fnn.BatchNorm(), fnn.Dropout(0.25),
                            fnn.Dense(6, activation="tanh"), fnn.Dense(3)],
                           input_dim=4, dtype=dtype, seed=seed)
    model.compile(loss="softmax_cross_entropy", optimizer=copy.deepcopy(optimizer), l2=1e-3)
    return model


def same_model(a, b):
    assert np.array_equal(a._params, b._params)
    assert np.array_equal(a._state, b._state)
    assert a._epoch == b._epoch
    for key in ("s1", "s2", "t"):
        assert np.array_equal(a._opt_state[key], b._opt_state[key])


# --------------------------------------------------------------- round trips
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: repr(o))
def test_resume_after_save_load_is_bitwise(tmp_path, optimizer):
    X, y = data()
    kw = dict(batch_size=16, lr_schedule=InverseTimeDecay(0.3), shuffle=True)
    straight = net(optimizer)
    straight.fit(X, y, epochs=5, **kw)

    first = net(optimizer)
    first.fit(X, y, epochs=2, **kw)
    first.save(tmp_path / "mid.fnn")
    resumed = fnn.load(tmp_path / "mid.fnn")
    resumed.fit(X, y, epochs=3, **kw)
    same_model(straight, resumed)
    assert np.array_equal(straight.predict_proba(X), resumed.predict_proba(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_mid_fit_resumes_bitwise(tmp_path, dtype):
    X, y = data(seed=1)
    straight = net(fnn.Adam(lr=0.01), dtype)
    straight.fit(X, y, epochs=4, batch_size=10)
    model = net(fnn.Adam(lr=0.01), dtype)
    model.fit(X, y, epochs=4, batch_size=10,
              callbacks=[ModelCheckpoint(str(tmp_path / "ep{epoch}.fnn"))])
    same_model(straight, model)
    resumed = fnn.load(tmp_path / "ep2.fnn")
    assert resumed._epoch == 2 and resumed.dtype == np.dtype(dtype)
    resumed.fit(X, y, epochs=2, batch_size=10)
    same_model(straight, resumed)


def test_loaded_model_is_identical(tmp_path):
    X, y = data()
    model = net(fnn.AdamW(lr=0.01))
    model.fit(X, y, epochs=3, batch_size=8)
    model.save(tmp_path / "m.fnn")
    back = fnn.load(tmp_path / "m.fnn")
    assert back.summary() == model.summary()
    assert (back.loss, back.l2, back.seed, back.input_dim) == (model.loss, model.l2, model.seed, 4)
    assert type(back.optimizer) is fnn.AdamW
    assert back.optimizer.get_config() == model.optimizer.get_config()
    assert np.array_equal(back.predict(X), model.predict(X))
    assert np.array_equal(back.predict_proba(X), model.predict_proba(X))
    assert back.evaluate(X, y) == model.evaluate(X, y)
    assert back._classes.tolist() == ["cat", "dog", "eel"]
    assert back._shuffle_rng.bit_generator.state == model._shuffle_rng.bit_generator.state
    # the file is an ordinary .npz of plain arrays
    with np.load(tmp_path / "m.fnn", allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        assert header["format"] == "fastnn" and header["format_version"] == 1
        assert np.array_equal(npz["params"], model._params)


@pytest.mark.parametrize("case", ["binary_1d", "binary_2d_bool", "mse_1d", "mse_2d", "onehot",
                                  "object_labels", "float_labels"])
def test_round_trip_of_every_label_encoding(tmp_path, case):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    loss, units = "softmax_cross_entropy", 3
    if case == "binary_1d":
        loss, units, y = "binary_cross_entropy", 1, (X[:, 0] > 0).astype(int)
    elif case == "binary_2d_bool":
        loss, units, y = "binary_cross_entropy", 2, X[:, :2] > 0
    elif case == "mse_1d":
        loss, units, y = "mse", 1, X[:, 0]
    elif case == "mse_2d":
        loss, units, y = "mse", 2, X[:, :2]
    elif case == "onehot":
        y = np.eye(3)[rng.integers(0, 3, 40)]
    elif case == "object_labels":
        y = np.array(["x", "yy", "z"], dtype=object)[rng.integers(0, 3, 40)]
    else:
        y = np.array([-1.5, 0.0, 2.5])[rng.integers(0, 3, 40)]
    model = fnn.Sequential([fnn.Dense(5, activation="tanh"), fnn.Dense(units)], seed=1)
    model.compile(loss=loss, optimizer="rmsprop")
    model.fit(X, y, epochs=2, batch_size=7)
    model.save(tmp_path / "m.fnn")
    back = fnn.load(tmp_path / "m.fnn")
    pred, again = model.predict(X), back.predict(X)
    assert pred.dtype == again.dtype and pred.shape == again.shape
    assert np.array_equal(pred, again)
    if model.is_classifier:
        assert np.array_equal(model.predict_proba(X), back.predict_proba(X))


def test_unbuilt_and_uncompiled_models_round_trip(tmp_path):
    unbuilt = fnn.Sequential([fnn.Dense(4, activation="elu", init="he_normal"), fnn.Dense(2)],
                             dtype="float64", seed=9)
    unbuilt.compile(loss="mse", optimizer=fnn.SGD(lr=0.1, momentum=0.5))
    unbuilt.save(tmp_path / "a.fnn")
    back = fnn.load(tmp_path / "a.fnn")
    assert not back._built and back.input_dim is None and back.loss == "mse"
    X = np.random.default_rng(0).normal(size=(30, 3))
    unbuilt.fit(X, X[:, :2], epochs=2)
    back.fit(X, X[:, :2], epochs=2)
    assert np.array_equal(unbuilt._params, back._params)

    plain = fnn.Sequential([fnn.Dense(3, use_bias=False), fnn.Dense(1, activation="sigmoid")],
                           input_dim=2, seed=2)
    plain.save(tmp_path / "b.fnn")
    back = fnn.load(tmp_path / "b.fnn")
    assert not back._compiled and np.array_equal(back._params, plain._params)


def test_save_refuses_what_needs_pickle(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 2))
    model = fnn.Sequential([fnn.Dense(2)], input_dim=2, seed=0)
    model.compile(optimizer="sgd")
    model.fit(X, (X[:, 0] > 0).astype(int))
    model._classes = np.array([1, "a"], dtype=object)
    with pytest.raises(ValueError, match="labels"):
        model.save(tmp_path / "m.fnn")

    class MySGD(fnn.SGD):
        pass
    model._classes = np.array([0, 1])
    model.compile(optimizer=MySGD())
    with pytest.raises(ValueError, match="optimizer"):
        model.save(tmp_path / "m.fnn")
    assert not os.path.exists(tmp_path / "m.fnn")
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="path"):
        model.save(12)


# --------------------------------------------------------------- atomic write
def test_save_is_atomic(tmp_path, monkeypatch):
    X, y = data()
    model = net(fnn.Adam())
    model.fit(X, y, epochs=1)
    path = tmp_path / "m.fnn"
    model.save(path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask   # an ordinary file

    def explode(*args, **kwargs):
        raise OSError("disk full")
    model.fit(X, y, epochs=1)
    monkeypatch.setattr(np.lib.format, "write_array", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before                 # the old file is untouched
    assert os.listdir(tmp_path) == ["m.fnn"]           # and no temporary is left
    monkeypatch.undo()
    model.save(path)                                   # overwriting works
    assert os.listdir(tmp_path) == ["m.fnn"]
    assert np.array_equal(fnn.load(path)._params, model._params)


def test_save_errors_name_the_path_asked_for(tmp_path):
    """Not the temporary file the atomic write goes through."""
    model = net(fnn.Adam())
    missing = tmp_path / "no-such-folder" / "m.fnn"
    with pytest.raises(FileNotFoundError) as info:
        model.save(missing)
    assert info.value.filename == str(missing) and ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        model.save(tmp_path)
    assert info.value.filename == str(tmp_path)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- bad files
def _small_model_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 2))
    model = fnn.Sequential([fnn.Dense(3, activation="tanh"), fnn.BatchNorm(), fnn.Dense(2)],
                           input_dim=2, seed=0)
    model.compile(optimizer="adam")
    model.fit(X, np.where(X[:, 0] > 0, "p", "q"), epochs=1)
    path = tmp_path / "small.fnn"
    model.save(path)
    return path.read_bytes()


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(members, compression=zipfile.ZIP_STORED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return out.getvalue()


def _npy(array):
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def _with_header(blob, **changes):
    members = _members(blob)
    header = json.loads(np.load(io.BytesIO(members["header.npy"])).tobytes())
    header.update(changes)
    members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    return _zip(members)


class Boom:
    """Unpickling this would create a marker file."""
    marker = None

    def __reduce__(self):
        return (open, (Boom.marker, "w"))


def _bad_files(blob, tmp_path):
    members = _members(blob)
    Boom.marker = str(tmp_path / "PWNED")
    evil_member = dict(members, **{"params.npy": _npy(np.array([Boom()], dtype=object))})
    npz = io.BytesIO()
    np.savez(npz, a=np.arange(3))
    return {
        "empty": (b"", "empty"),
        "truncated": (blob[:len(blob) // 2], "damaged or truncated"),
        "text": (b"just some text\n", "not a zip"),
        "pickle": (pickle.dumps({"weights": [1, 2]}), "pickle"),
        "evil pickle": (pickle.dumps(Boom()), "pickle"),
        "foreign npz": (npz.getvalue(), "members"),
        "object member": (_zip(evil_member), "dtype"),
        "missing member": (_zip({k: v for k, v in members.items() if k != "state.npy"}),
                           "members"),
        "compressed": (_zip(members, zipfile.ZIP_DEFLATED), "compressed"),
        "newer version": (_with_header(blob, format_version=2), "newer fastnn"),
        "other format": (_with_header(blob, format="keras"), "format"),
        "wrong width": (_with_header(blob, input_dim=5), "entries"),
        "huge width": (_with_header(blob, input_dim=10 ** 12), "more than the file"),
        "bad layer": (_with_header(blob, layers=[{"kind": "conv", "config": {}}]), "layer"),
        "bad optimizer": (_with_header(blob, optimizer={"class": "os.system", "config": {}}),
                          "optimizer"),
        "bad lr": (_with_header(blob, optimizer={"class": "Adam", "config": {"lr": -1}}), "lr"),
        "bad rng": (_with_header(blob, shuffle_rng={"bit_generator": "MT19937"}), "shuffle_rng"),
        "extra field": (_with_header(blob, code="import os"), "fields"),
        "flipped byte": (_flip_in_params(blob), "CRC"),
    }


def _flip_in_params(blob):
    """Flip one byte inside the data of params.npy (past its .npy header)."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        info = zf.getinfo("params.npy")
    name_len = int.from_bytes(blob[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(blob[info.header_offset + 28:info.header_offset + 30], "little")
    at = info.header_offset + 30 + name_len + extra_len + 128 + 5
    return blob[:at] + bytes([blob[at] ^ 0x55]) + blob[at + 1:]


def test_damaged_and_foreign_files_raise_clear_value_errors(tmp_path):
    blob = _small_model_file(tmp_path)
    for name, (raw, words) in _bad_files(blob, tmp_path).items():
        path = tmp_path / "bad.fnn"
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=words) as info:
            fnn.load(path)
        assert str(path) in str(info.value), name
    assert not os.path.exists(tmp_path / "PWNED")      # nothing was unpickled
    with pytest.raises(FileNotFoundError):
        fnn.load(tmp_path / "missing.fnn")
    with pytest.raises(TypeError, match="path"):
        fnn.load(None)


def test_loader_fuzz_only_value_errors(tmp_path):
    """Every truncation, ~2000 random byte flips and ~300 random files: the
    loader answers ValueError (or loads, when a flip hit bytes zip ignores)."""
    blob = _small_model_file(tmp_path)
    assert len(blob) < 4000
    rng = np.random.default_rng(2024)
    cases = [blob[:k] for k in range(len(blob))]
    for _ in range(2000):
        b = bytearray(blob)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        cases.append(bytes(b))
    for _ in range(250):
        cases.append(rng.bytes(int(rng.integers(0, 3000))))
    for _ in range(50):   # random bytes behind a zip signature
        cases.append(b"PK\x03\x04" + rng.bytes(int(rng.integers(0, 3000))))
    path = tmp_path / "fuzz.fnn"
    loaded = 0
    for raw in cases:
        path.write_bytes(raw)
        try:
            model = fnn.load(path)
        except ValueError:
            continue
        loaded += 1
        assert model.n_params == 23          # only harmless flips load
    assert len(cases) > 4500 and loaded < len(cases) // 10
