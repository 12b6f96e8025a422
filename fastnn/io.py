"""Safe single-file save and load of a ``Sequential`` model.

The file is an uncompressed zip of ``.npy`` members (``np.load`` opens it as
an ``.npz``), written atomically and read without pickle:

    header.npy   uint8 (m,)    UTF-8 JSON: format name and version, layers, dtype,
                               seed, input width, loss, optimizer class and config,
                               l2, epochs done, label encoding, shuffle RNG state
    params.npy   dtype (P,)    the flat parameter buffer (every W, b, gamma, beta)
    state.npy    dtype (S,)    BatchNorm running statistics
    opt_s1.npy   dtype (P,)    optimizer state (empty when there is none yet)
    opt_s2.npy   dtype (P,)    second optimizer state (Adam family; else empty)
    opt_t.npy    int64 (1,)    optimizer step count
    classes.npy  (k,)          label values: numbers or unicode strings (empty if none)

Loading checks everything before building anything: the zip structure and CRCs,
the member list, the JSON schema, and each member's ``.npy`` header (dtype,
shape) against the architecture, so sizes are known before any bytes are read.
Any damaged, truncated, foreign or newer-format file raises ``ValueError``.
Dropout masks depend only on (seed, step), so restoring the seed, the step
count and the shuffle RNG state makes training resume bitwise.
"""

import errno
import json
import os
import uuid
import zipfile

import numpy as np

FORMAT = "fastnn"
FORMAT_VERSION = 1
_MEMBERS = ("header", "params", "state", "opt_s1", "opt_s2", "opt_t", "classes")
_CLASS_KINDS = "biufUS"
# what a corrupted zip or .npy member can raise while being parsed
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, EOFError, OSError,
                 OverflowError, RecursionError, NotImplementedError, SyntaxError,
                 zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError)


class _Bad(ValueError):
    """Raised inside load; turned into one ValueError naming the file."""


# ---------------------------------------------------------------- save
def save(model, path):
    """Write ``model`` to ``path`` (exactly that name; no suffix is added).

    Atomic: the bytes go to a temporary file in the same directory, are flushed
    and fsynced, then renamed over ``path``; a crash leaves either the old file
    or the new one, never a half-written one under ``path``."""
    from .model import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential, got {type(model).__name__}")
    path = _check_path(path)
    header, arrays = _serialise(model)
    blob = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    arrays["header"] = np.frombuffer(blob, np.uint8)
    _atomic_write(path, arrays)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("path must not be empty")
    return path


def _serialise(model):
    """(header dict, {member: array}) for ``model``; raises ValueError for
    what cannot be stored without pickle (custom optimizers, object labels)."""
    from . import optimizers
    built = model._built
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": _version(),
        "dtype": model.dtype.name,
        "seed": int(model.seed),
        "input_dim": int(model.input_dim) if built else None,
        "layers": [{"kind": layer.kind, "config": layer._config()} for layer in model.layers],
        "compiled": bool(model._compiled),
        "loss": model.loss if model._compiled else None,
        "optimizer": None,
        "l2": float(model.l2),
        "l2_per_row": bool(model._l2_per_row),
        "epoch": int(model._epoch),
        "y_ndim": None if model._y_ndim is None else int(model._y_ndim),
        "classes": None,
        "has_optimizer_state": False,
        "shuffle_rng": _rng_state(model._shuffle_rng),
    }
    if model._compiled:
        opt = model.optimizer
        if _OPTIMIZER_CLASSES().get(type(opt).__name__) is not type(opt):
            raise ValueError(f"optimizer: cannot save an optimizer of class "
                             f"{type(opt).__name__}; only fastnn's own optimizers "
                             f"({sorted(optimizers.OPTIMIZERS)}) can be stored")
        header["optimizer"] = {"class": type(opt).__name__, "config": _plain(opt.get_config())}
    dtype = model.dtype
    empty = np.zeros(0, dtype)
    arrays = {"params": model._public_order(model._params) if built else empty,
              "state": model._state if built else empty,
              "opt_s1": empty, "opt_s2": empty, "opt_t": np.zeros(1, np.int64),
              "classes": np.zeros(0, np.int64)}
    if built and model._compiled and model._opt_state is not None:
        st = model._opt_state
        header["has_optimizer_state"] = True
        arrays.update(opt_s1=model._public_order(st["s1"]),
                      opt_s2=model._public_order(st["s2"]),
                      opt_t=np.asarray(st["t"], np.int64).reshape(1))
    if model._classes is not None:
        classes, was_object = _storable_labels(model._classes)
        header["classes"] = {"object": was_object}
        arrays["classes"] = classes
    return header, arrays


def _storable_labels(classes):
    """Labels as a plain numeric or unicode array (and whether they were objects)."""
    classes = np.asarray(classes)
    if classes.dtype.kind in _CLASS_KINDS and classes.dtype.names is None:
        return classes.reshape(-1), False
    if classes.dtype.kind == "O":
        values = classes.reshape(-1).tolist()
        kinds = {type(v) for v in values}
        plain = np.array(values) if kinds and all(
            issubclass(k, (str, int, float, bool, np.generic)) for k in kinds) else None
        if (plain is not None and plain.dtype.kind in _CLASS_KINDS
                and len(kinds) == 1 and list(plain.astype(object)) == values):
            return plain, True
    raise ValueError(f"the model's labels (classes {classes[:5].tolist()!r}, dtype "
                     f"{classes.dtype}) cannot be saved: only numbers or strings of one "
                     "type can be stored without pickle")


def _plain(config):
    """A JSON-able copy of an optimizer config (NumPy scalars to Python)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, (bool, int, float, str)) and v is not None:
            raise ValueError(f"optimizer: setting {k}={v!r} cannot be saved")
        out[k] = v
    return out


def _rng_state(rng):
    state = rng.bit_generator.state
    return json.loads(json.dumps(state))


def _version():
    from . import __version__
    return __version__


def _atomic_write(path, arrays, members=None):
    """Write ``arrays`` (name -> 1-D array, in the order of ``members``) as
    stored .npy members of a zip: temporary file, fsync, rename, fsync dir."""
    members = _MEMBERS if members is None else members
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:        # name the file asked for, not the temporary one
        raise type(e)(e.errno, e.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for name in members:
                    with zf.open(name + ".npy", "w", force_zip64=False) as member:
                        np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                                  allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename == tmp:
            raise type(e)(e.errno, e.strerror, path) from None
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:          # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:          # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- load
def load(path):
    """The model saved at ``path``. Raises ValueError (naming the file and the
    problem) for anything that is not an intact fastnn model file of a format
    version this fastnn reads; never unpickles or runs code from the file.
    A file written by a scikit-learn estimator's ``save`` loads as that
    estimator."""
    path = _check_path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            return _load(f, size)
        except _Bad as e:
            if _format_of(f) == "fastnn-sklearn":
                from . import _sklearn_io
                return _sklearn_io.load(path)
            raise ValueError(f"{path}: {e}") from None
        except _PARSE_ERRORS as e:
            raise ValueError(f"{path}: not a valid fastnn model file (damaged or truncated: "
                             f"{type(e).__name__}: {e})") from None


def _load(f, size):
    if size == 0:
        raise _Bad("the file is empty")
    magic = f.read(4)
    if magic[:1] == b"\x80":
        raise _Bad("this looks like a pickle; fastnn model files are never pickles "
                   "and pickles are never loaded")
    if magic != b"PK\x03\x04":
        raise _Bad("not a fastnn model file (not a zip archive)")
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        raise _Bad(f"not a valid fastnn model file (damaged or truncated zip: {e})") from None
    with zf:
        infos = _check_members(zf)
        header = _read_header(zf, infos["header"])
        return _build(zf, infos, header, size)


def _check_members(zf):
    infos = zf.infolist()
    names = [i.filename for i in infos]
    expected = sorted(m + ".npy" for m in _MEMBERS)
    if sorted(names) != expected:
        raise _Bad(f"not a fastnn model file: members {sorted(names)[:10]} differ from "
                   f"{expected}")
    for info in infos:
        if info.flag_bits & 0x1:
            raise _Bad(f"member {info.filename} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Bad(f"member {info.filename} is compressed; fastnn writes stored members")
    return {i.filename[:-4]: i for i in infos}


def _read_npy(zf, info, check):
    """Parse a member's .npy header, let ``check(shape, dtype)`` approve it,
    then read exactly its bytes (the zip CRC is verified at the end)."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Bad(f"member {info.filename}: unsupported .npy version {version}")
        name = info.filename[:-4]
        if dtype.hasobject or dtype.names is not None or dtype.shape != ():
            raise _Bad(f"member {name}: dtype {dtype} is not a plain numeric or string dtype")
        if len(shape) != 1:
            raise _Bad(f"member {name}: expected a 1-D array, got shape {shape}")
        check(name, shape[0], dtype)
        nbytes = shape[0] * dtype.itemsize
        if nbytes > info.file_size:
            raise _Bad(f"member {name}: {shape[0]} entries do not fit in {info.file_size} bytes")
        data = f.read()
        if len(data) != nbytes:
            raise _Bad(f"member {name}: holds {len(data)} bytes of data, expected {nbytes}")
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))


def _expect(kind, itemsize, length):
    def check(name, n, dtype):
        if dtype.kind not in kind or (itemsize and dtype.itemsize != itemsize):
            raise _Bad(f"member {name}: unexpected dtype {dtype}")
        if length is not None and n not in (length if isinstance(length, tuple) else (length,)):
            raise _Bad(f"member {name}: {n} entries, expected {length}")
    return check


def _format_of(f):
    """The "format" named by a zip's JSON header, or None (never raises)."""
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            info = zf.getinfo("header.npy")
            if info.file_size > 16 * 2 ** 20:
                return None
            raw = _read_npy(zf, info, _expect("u", 1, None)).tobytes()
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        return header.get("format") if isinstance(header, dict) else None
    except Exception:
        return None


def _read_header(zf, info):
    if info.file_size > 16 * 2 ** 20:
        raise _Bad("header too large")
    raw = _read_npy(zf, info, _expect("u", 1, None)).tobytes()
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise _Bad(f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _Bad("the header is not a JSON object")
    if header.get("format") != FORMAT:
        raise _Bad(f"not a fastnn model file (format {header.get('format')!r})")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise _Bad(f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise _Bad(f"written with format version {version} by a newer fastnn "
                   f"({header.get('fastnn_version')!r}); this fastnn ({_version()}) reads "
                   f"format version {FORMAT_VERSION} and older: upgrade fastnn to load it")
    _check_schema(header)
    return header


def _no_constant(name):
    raise _Bad(f"the header contains {name}")


_INT, _FLOAT, _BOOL, _STR = "int", "float", "bool", "str"
_SCHEMA = {
    "format": _STR, "format_version": _INT, "fastnn_version": _STR, "dtype": _STR,
    "seed": _INT, "input_dim": (_INT, None), "layers": list, "compiled": _BOOL,
    "loss": (_STR, None), "optimizer": (dict, None), "l2": _FLOAT, "l2_per_row": _BOOL,
    "epoch": _INT, "y_ndim": (_INT, None), "classes": (dict, None),
    "has_optimizer_state": _BOOL, "shuffle_rng": dict,
}


def _is(value, kind):
    if kind is None:
        return value is None
    if kind == _INT:
        return type(value) is int
    if kind == _FLOAT:
        return type(value) in (int, float)
    if kind == _BOOL:
        return type(value) is bool
    if kind == _STR:
        return type(value) is str
    return type(value) is kind


def _check_schema(header):
    if set(header) != set(_SCHEMA):
        raise _Bad(f"header fields {sorted(header)} differ from {sorted(_SCHEMA)}")
    for key, kinds in _SCHEMA.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if not any(_is(header[key], k) for k in kinds):
            raise _Bad(f"header field {key!r} has an invalid value {header[key]!r}")
    for i, layer in enumerate(header["layers"]):
        if (not isinstance(layer, dict) or set(layer) != {"kind", "config"}
                or type(layer["kind"]) is not str or type(layer["config"]) is not dict):
            raise _Bad(f"header: layers[{i}] is not a {{kind, config}} object")
    opt = header["optimizer"]
    if opt is not None and (set(opt) != {"class", "config"} or type(opt["class"]) is not str
                            or type(opt["config"]) is not dict):
        raise _Bad("header: optimizer is not a {class, config} object")
    if header["classes"] is not None and (set(header["classes"]) != {"object"}
                                          or type(header["classes"]["object"]) is not bool):
        raise _Bad("header: classes is not an {object} object")
    if header["compiled"] != (header["loss"] is not None) or \
            header["compiled"] != (header["optimizer"] is not None):
        raise _Bad("header: compiled, loss and optimizer disagree")
    if header["epoch"] < 0 or header["y_ndim"] not in (None, 1, 2):
        raise _Bad("header: epoch or y_ndim out of range")


def _OPTIMIZER_CLASSES():
    from . import optimizers
    return {cls.__name__: cls for cls in vars(optimizers).values()
            if isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)
            and cls is not optimizers.Optimizer}


def _objects(header):
    """Layer and optimizer objects from the header, through their validating
    constructors (any complaint means a damaged header)."""
    from .layers import LAYER_TYPES
    try:
        layers = []
        for spec in header["layers"]:
            cls = LAYER_TYPES.get(spec["kind"])
            if cls is None:
                raise _Bad(f"unknown layer kind {spec['kind']!r}")
            layers.append(cls(**spec["config"]))
        optimizer = None
        if header["optimizer"] is not None:
            cls = _OPTIMIZER_CLASSES().get(header["optimizer"]["class"])
            if cls is None:
                raise _Bad(f"unknown optimizer class {header['optimizer']['class']!r}")
            optimizer = cls(**header["optimizer"]["config"])
    except (TypeError, ValueError) as e:
        raise _Bad(f"invalid header ({e})") from None
    return layers, optimizer


def _sizes(layers, input_dim):
    """(n_params, n_state, n_outputs) the architecture implies."""
    from .layers import BatchNorm
    n_params = n_state = 0
    width = input_dim
    for layer in layers:
        for _, shape, _ in layer._param_shapes(width):
            n_params += int(np.prod(shape))
        if isinstance(layer, BatchNorm):
            n_state += 2 * width
        width = layer._output_width(width)
    return n_params, n_state


def _build(zf, infos, header, size):
    from .model import Sequential
    layers, optimizer = _objects(header)
    if not layers or header["dtype"] not in ("float32", "float64"):
        raise _Bad("invalid header (no layers or unknown dtype)")
    dtype = np.dtype(header["dtype"])
    built = header["input_dim"] is not None
    n_params, n_state = _sizes(layers, header["input_dim"]) if built else (0, 0)
    if (n_params + n_state) * dtype.itemsize > size:
        raise _Bad(f"the header describes {n_params} parameters, more than the file holds")
    has_opt = header["has_optimizer_state"]
    if has_opt and not (built and optimizer is not None):
        raise _Bad("header: optimizer state without a built, compiled model")
    n_s1 = n_params if has_opt else 0
    n_s2 = n_params if has_opt and optimizer.n_state > 1 else 0
    fkind, fsize = "f", dtype.itemsize
    params = _read_npy(zf, infos["params"], _expect(fkind, fsize, n_params))
    state = _read_npy(zf, infos["state"], _expect(fkind, fsize, n_state))
    s1 = _read_npy(zf, infos["opt_s1"], _expect(fkind, fsize, n_s1))
    s2 = _read_npy(zf, infos["opt_s2"], _expect(fkind, fsize, n_s2))
    t = _read_npy(zf, infos["opt_t"], _expect("i", 8, 1)).astype(np.int64)
    if t[0] < 0:
        raise _Bad("negative optimizer step count")
    classes = _read_classes(zf, infos["classes"], header, layers)
    rng = _restore_rng(header["shuffle_rng"])

    try:
        model = Sequential(layers, input_dim=header["input_dim"], dtype=header["dtype"],
                           seed=header["seed"])
        if header["compiled"]:
            model.compile(loss=header["loss"], optimizer=optimizer, l2=header["l2"])
    except (TypeError, ValueError) as e:
        raise _Bad(f"invalid header ({e})") from None
    if built:
        model._params[...] = model._flat_order(params)
        model._state[...] = state
        if has_opt:
            model._opt_state = dict(s1=model._flat_order(s1), s2=model._flat_order(s2), t=t)
    model._l2_per_row = header["l2_per_row"]
    model._epoch = header["epoch"]
    model._y_ndim = header["y_ndim"]
    model._classes = classes
    model._shuffle_rng = rng
    return model


def _read_classes(zf, info, header, layers):
    spec = header["classes"]
    if spec is None:
        _read_npy(zf, info, _expect("i", 8, 0))
        return None
    loss = header["loss"]
    if loss == "softmax_cross_entropy":
        k = layers[-1].units
    elif loss == "binary_cross_entropy":
        k = 2
    else:
        raise _Bad("header: labels stored for a model without a classification loss")
    classes = _read_npy(zf, info, _expect(_CLASS_KINDS, 0, k))
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise _Bad("member classes: labels must be finite")
    if spec["object"]:
        classes = classes.astype(object)
    return classes


def _restore_rng(state):
    if state.get("bit_generator") != "PCG64":
        raise _Bad("header: shuffle_rng is not a PCG64 state")
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise _Bad(f"header: invalid shuffle_rng state ({e})") from None
    return rng
