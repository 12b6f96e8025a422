"""Safe single-file save and load of fitted ``MLPClassifier``/``MLPRegressor``.

The same container as ``fastnn.io`` (an uncompressed zip of ``.npy`` members,
written atomically, read without pickle), with its own format name:

    header.npy         uint8 (m,)  UTF-8 JSON: format, estimator class, its
                                   parameters, fitted scalar attributes and lists
    params.npy         dtype (P,)  the network's flat parameter buffer
    best_params.npy    dtype (P,)  the early-stopping copy
    opt_s1.npy, opt_s2.npy, opt_t.npy   optimizer state (empty when none)
    classes.npy        (k,)        classes_ (numbers or unicode; empty for regressors)
    feature_names.npy  (f,)        feature_names_in_ (unicode; empty when none)

Non-finite floats (``best_loss_ = inf``, ``n_iter_no_change = inf``, a NaN
validation score) are written as the strings "inf", "-inf", "nan". Loading
checks the member list, the JSON against a schema, every ``.npy`` header
against the architecture, and the parameters through the estimator's own
validation; anything else raises ValueError naming the file.
"""

import json
import math
import zipfile

import numpy as np

from . import io as _io

FORMAT = "fastnn-sklearn"
FORMAT_VERSION = 1
_MEMBERS = ("header", "params", "best_params", "opt_s1", "opt_s2", "opt_t", "classes",
            "feature_names")
# fitted attributes by kind; each may be absent (e.g. loss_curve_ after lbfgs)
_INT_ATTRS = ("n_features_in_", "n_iter_", "t_", "n_outputs_", "n_layers_",
              "_no_improvement_count")
_FLOAT_ATTRS = ("loss_", "best_loss_", "best_validation_score_", "_optimizer_lr")
_STR_ATTRS = ("out_activation_", "_optimizer_solver")
_LIST_ATTRS = ("loss_curve_", "validation_scores_")
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# ---------------------------------------------------------------- save
def save(est, path):
    """Write the fitted estimator ``est`` to ``path`` (atomically)."""
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(est)
    path = _io._check_path(path)
    est._sync_params()
    net = est._net
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastnn_version": _io._version(),
        "estimator": type(est).__name__,
        "params": {k: _plain(k, v) for k, v in est.get_params(deep=False).items()},
        "layer_units": [int(net.input_dim)] + [int(layer.units) for layer in net.layers],
        "net": {"activation": est._net_activation, "loss": est._net_loss,
                "dtype": est._net_dtype},
        "attrs": {}, "binarizer": None,
    }
    for name in _INT_ATTRS:
        if name in vars(est):
            header["attrs"][name] = int(getattr(est, name))
    for name in _FLOAT_ATTRS + _LIST_ATTRS:
        if name in vars(est):
            header["attrs"][name] = _number(getattr(est, name))
    for name in _STR_ATTRS:
        if name in vars(est):
            header["attrs"][name] = str(getattr(est, name))
    lb = vars(est).get("_label_binarizer")
    if lb is not None:
        header["binarizer"] = {"y_type": str(lb.y_type_), "sparse_input": bool(lb.sparse_input_)}
    opt = net._opt_state
    empty = np.zeros(0, net.dtype)
    arrays = {
        # flat arrays in the public order (every W untransposed, see
        # Sequential._public_order), whatever the network keeps in memory
        "params": net._public_order(net._params),
        "best_params": net._public_order(est._best_params),
        "opt_s1": empty if opt is None else net._public_order(opt["s1"]),
        "opt_s2": empty if opt is None else net._public_order(opt["s2"]),
        "opt_t": np.zeros(0, np.int64) if opt is None else opt["t"],
        "classes": _labels(vars(est).get("classes_")),
        "feature_names": (np.asarray(est.feature_names_in_, dtype=str)
                          if "feature_names_in_" in vars(est) else np.zeros(0, "U1")),
    }
    blob = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    arrays["header"] = np.frombuffer(blob, np.uint8)
    _write(path, arrays)


def _plain(name, value):
    """A JSON value for constructor parameter ``name``, from which
    ``_param`` gives back an equal one (``get_params`` survives the file)."""
    if name == "hidden_layer_sizes":        # an int, a tuple, or {"list": [...]}
        if not hasattr(value, "__iter__"):
            return int(value)
        sizes = [int(h) for h in value]
        return {"list": sizes} if isinstance(value, list) else sizes
    if name == "random_state" and isinstance(value, np.random.RandomState):
        kind, key, pos, has_gauss, cached = value.get_state()
        return {"RandomState": {"key": [int(k) for k in key], "pos": int(pos),
                                "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if name == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
        raise ValueError("random_state: only an int, a RandomState or None can be saved "
                         f"(got {type(value).__name__}); pickle the estimator instead")
    if name == "dtype":                     # "float32", or {"type"/"dtype": "float32"}
        if isinstance(value, str):
            return np.dtype(value).name
        return {"type" if isinstance(value, type) else "dtype": np.dtype(value).name}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(value)
    return value


def _number(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [_number(v) for v in value]
    value = float(value)
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _labels(classes):
    if classes is None:
        return np.zeros(0, np.int64)
    classes = np.asarray(classes)
    if classes.dtype.kind in "biuf":
        return classes
    if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):
        return classes.astype(str)
    if classes.dtype.kind == "U":
        return classes
    raise ValueError(f"classes_ of dtype {classes.dtype} cannot be saved without pickle")


def _write(path, arrays):
    _io._atomic_write(path, arrays, _MEMBERS)


# ---------------------------------------------------------------- load
def load(path):
    """The estimator saved at ``path`` by ``est.save(path)``; ValueError for
    anything that is not an intact file of this format."""
    path = _io._check_path(path)
    with open(path, "rb") as f:
        try:
            return _load(f)
        except _io._Bad as e:
            raise ValueError(f"{path}: {e}") from None
        except _io._PARSE_ERRORS as e:
            raise ValueError(f"{path}: not a valid fastnn estimator file (damaged or "
                             f"truncated: {type(e).__name__}: {e})") from None


def _load(f):
    magic = f.read(4)
    if magic[:1] == b"\x80":
        raise _io._Bad("this looks like a pickle; fastnn files are never pickles and "
                       "pickles are never loaded")
    if magic != b"PK\x03\x04":
        raise _io._Bad("not a fastnn estimator file (not a zip archive)")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        if sorted(infos) != sorted(m + ".npy" for m in _MEMBERS):
            if sorted(infos) == sorted(m + ".npy" for m in _io._MEMBERS):
                raise _io._Bad("this is a fastnn model file: load it with fastnn.load")
            raise _io._Bad(f"not a fastnn estimator file (members {sorted(infos)[:10]})")
        for info in infos.values():
            if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_STORED:
                raise _io._Bad(f"member {info.filename} is encrypted or compressed")
        header = _read_header(zf, infos["header.npy"])
        return _build(zf, {k[:-4]: v for k, v in infos.items()}, header)


def _read_header(zf, info):
    if info.file_size > 64 * 2 ** 20:
        raise _io._Bad("header too large")
    raw = _io._read_npy(zf, info, _io._expect("u", 1, None)).tobytes()
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_io._no_constant)
    except (ValueError, RecursionError) as e:
        raise _io._Bad(f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _io._Bad("not a fastnn estimator file (format "
                       f"{header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise _io._Bad(f"format version {version!r} is not one this fastnn reads "
                       f"(up to {FORMAT_VERSION})")
    expected = {"format", "format_version", "fastnn_version", "estimator", "params",
                "layer_units", "net", "attrs", "binarizer"}
    if set(header) != expected:
        raise _io._Bad(f"header fields {sorted(header)} differ from {sorted(expected)}")
    units = header["layer_units"]
    if (type(units) is not list or len(units) < 2
            or not all(type(u) is int and 0 < u < 2 ** 31 for u in units)):
        raise _io._Bad("header: invalid layer_units")
    net = header["net"]
    if (type(net) is not dict or set(net) != {"activation", "loss", "dtype"}
            or not all(type(v) is str for v in net.values())
            or net["dtype"] not in ("float32", "float64")):
        raise _io._Bad("header: invalid net description")
    attrs = header["attrs"]
    if type(attrs) is not dict or type(header["params"]) is not dict:
        raise _io._Bad("header: params and attrs must be objects")
    for name, value in attrs.items():
        ok = (name in _INT_ATTRS and type(value) is int
              or name in _FLOAT_ATTRS and _is_number(value, allow_none=True)
              or name in _STR_ATTRS and type(value) is str
              or name in _LIST_ATTRS and (value is None or type(value) is list
                                          and all(_is_number(v) for v in value)))
        if not ok:
            raise _io._Bad(f"header: attribute {name!r} has an invalid value")
    lb = header["binarizer"]
    if lb is not None and (type(lb) is not dict or set(lb) != {"y_type", "sparse_input"}
                           or type(lb["y_type"]) is not str
                           or type(lb["sparse_input"]) is not bool):
        raise _io._Bad("header: invalid binarizer")
    return header


def _is_number(value, allow_none=False):
    return (type(value) in (int, float) or value in _NONFINITE
            or (allow_none and value is None))


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, str):
        return _NONFINITE[value]
    return None if value is None else float(value)


def _param(name, value):
    """Constructor parameter ``name`` from its JSON value (see ``_plain``);
    ValueError for a value ``_plain`` does not write."""
    if name == "n_iter_no_change" and value == "inf":
        return math.inf
    if name == "hidden_layer_sizes" and type(value) is list:
        return tuple(value)
    if type(value) is not dict:
        return value
    if name == "hidden_layer_sizes" and set(value) == {"list"} and type(value["list"]) is list:
        return list(value["list"])
    if name == "dtype" and len(value) == 1 and value.get("type", value.get("dtype")) in (
            "float32", "float64"):
        kind, dtype = next(iter(value.items()))
        return np.dtype(dtype).type if kind == "type" else np.dtype(dtype)
    if name == "random_state" and set(value) == {"RandomState"}:
        state = value["RandomState"]
        if (type(state) is dict and set(state) == {"key", "pos", "has_gauss", "cached_gaussian"}
                and type(state["key"]) is list and len(state["key"]) == 624
                and all(type(k) is int and 0 <= k < 2 ** 32 for k in state["key"])
                and type(state["pos"]) is int and 0 <= state["pos"] <= 624
                and state["has_gauss"] in (0, 1) and _is_number(state["cached_gaussian"])):
            rs = np.random.RandomState()
            rs.set_state(("MT19937", np.array(state["key"], np.uint32), state["pos"],
                          state["has_gauss"], float(state["cached_gaussian"])))
            return rs
    raise ValueError(f"{name}: invalid saved value")


# the output activation each network loss goes with (see sklearn._loss_name)
_OUT_ACTIVATION = {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "logistic",
                   "half_mse": "identity", "half_poisson": "exp"}
_Y_TYPES = {"multiclass": "softmax_cross_entropy", "binary": "binary_cross_entropy",
            "multilabel-indicator": "binary_cross_entropy"}


def _check_consistent(classifier, header, units, classes):
    """The header's fitted attributes, label binarizer and classes agree with
    the stored network (a file whose parts disagree is damaged, not loaded)."""
    attrs, loss = header["attrs"], header["net"]["loss"]
    if loss not in _OUT_ACTIVATION or (loss in ("half_mse", "half_poisson")) == classifier:
        raise _io._Bad(f"header: network loss {loss!r} does not fit a {header['estimator']}")
    for name, want in (("n_features_in_", units[0]), ("n_outputs_", units[-1]),
                       ("n_layers_", len(units)), ("out_activation_", _OUT_ACTIVATION[loss])):
        if name in attrs and attrs[name] != want:
            raise _io._Bad(f"header: {name} {attrs[name]!r} disagrees with the network "
                           f"({want!r})")
    if not classifier:
        if classes.size:
            raise _io._Bad("a regressor file with classes")
        return
    y_type = header["binarizer"]["y_type"] if header["binarizer"] else None
    if _Y_TYPES.get(y_type) != loss:
        raise _io._Bad(f"header: label type {y_type!r} does not fit the network's loss")
    k = 2 if y_type == "binary" else units[-1]
    if classes.size != k or (y_type == "binary" and units[-1] != 1):
        raise _io._Bad(f"{classes.size} classes do not fit a network with {units[-1]} "
                       "outputs")


def _build(zf, infos, header):
    from sklearn.preprocessing import LabelBinarizer

    from . import sklearn as sk
    cls = {"MLPClassifier": sk.MLPClassifier, "MLPRegressor": sk.MLPRegressor}.get(
        header["estimator"])
    if cls is None:
        raise _io._Bad(f"unknown estimator {header['estimator']!r}")
    try:
        params = {k: _param(k, v) for k, v in header["params"].items()}
        est = cls(**params)
        est._validate_params()
    except (TypeError, ValueError) as e:
        raise _io._Bad(f"invalid estimator parameters ({e})") from None
    units = header["layer_units"]
    net_desc = header["net"]
    dtype = np.dtype(net_desc["dtype"])
    n_params = sum(a * b + b for a, b in zip(units[:-1], units[1:]))
    fsize = dtype.itemsize
    params_ = _io._read_npy(zf, infos["params"], _io._expect("f", fsize, n_params))
    best = _io._read_npy(zf, infos["best_params"], _io._expect("f", fsize, n_params))
    s1 = _io._read_npy(zf, infos["opt_s1"], _io._expect("f", fsize, (0, n_params)))
    s2 = _io._read_npy(zf, infos["opt_s2"], _io._expect("f", fsize, (0, n_params)))
    t = _io._read_npy(zf, infos["opt_t"], _io._expect("i", 8, (0, 1)))
    classes = _io._read_npy(zf, infos["classes"], _io._expect("biufU", 0, None))
    names = _io._read_npy(zf, infos["feature_names"], _io._expect("U", 0, None))
    if (t.size == 0) != (s1.size == 0) or (t.size and t[0] < 0):
        raise _io._Bad("inconsistent optimizer state")
    try:
        net = sk._build_net(units, net_desc["activation"], net_desc["loss"], dtype)
    except (TypeError, ValueError) as e:
        raise _io._Bad(f"invalid network description ({e})") from None
    net._params[...] = net._flat_order(params_)
    if t.size:
        net._opt_state = dict(s1=net._flat_order(s1), s2=net._flat_order(s2),
                              t=t.astype(np.int64))
    for name, value in header["attrs"].items():
        if name in _INT_ATTRS or name in _STR_ATTRS:
            setattr(est, name, value)
        else:
            setattr(est, name, _decode(value))
    _check_consistent(cls is sk.MLPClassifier, header, units, classes)
    if names.size:
        if names.size != units[0]:
            raise _io._Bad("feature_names disagree with the network")
        est.feature_names_in_ = names.astype(object)
    if cls is sk.MLPClassifier:
        lb_desc = header["binarizer"]
        if lb_desc is None or classes.size == 0:
            raise _io._Bad("a classifier file without classes")
        lb = LabelBinarizer()
        lb.classes_, lb.y_type_, lb.sparse_input_ = (
            classes, lb_desc["y_type"], lb_desc["sparse_input"])
        est._label_binarizer = lb
        est.classes_ = classes
    est._net = net
    est._net_activation, est._net_loss, est._net_dtype = (
        net_desc["activation"], net_desc["loss"], net_desc["dtype"])
    est._best_params = net._flat_order(best)
    est._point_at(net)
    return est
