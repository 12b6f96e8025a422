"""The epoch loop: validation of fit's arguments, shuffling, schedules,
callbacks, progress and History. Python runs once per epoch or per large slice
of it; the minibatches themselves run inside one compiled call
(``kernels.network.train_batches``)."""

import math

import numpy as np

from . import _validate
from . import schedules as _schedules
from .callbacks import CallbackList
from .data import as_features, check_sample_weight
from .kernels.network import train_batches
from .threads import blas_threads, limit_blas

# one compiled call handles about this many multiply-adds (a fraction of a
# second), so progress, callbacks and Ctrl-C are seen a few times per epoch
_FLOPS_PER_CALL = 3e8


class History:
    """``history``: dict of per-epoch lists (loss, accuracy, val_loss,
    val_accuracy, lr); ``batch_losses``: every minibatch's loss, in order;
    ``epoch``: the model's epoch numbers trained by this fit."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.batch_losses = np.zeros(0)
        self.stop_reason = None

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class _Buffers:
    """Preallocated workspace for one batch size (reused across fit calls)."""

    def __init__(self, model, batch_size):
        dtype = model.dtype
        widths = model._widths
        total = sum(widths)
        self.batch_size = batch_size
        self.acts = np.zeros(batch_size * total, dtype)
        self.work = np.zeros(batch_size * (total - widths[0]), dtype)
        self.d0 = np.zeros(batch_size * max(widths), dtype)
        self.d1 = np.zeros_like(self.d0)
        self.tbuf = np.zeros(batch_size * model.n_outputs, dtype)
        self.wbuf = np.zeros(batch_size, dtype)
        self.grads = np.zeros_like(model._params)
        self.bnbuf = np.zeros_like(model._state)


def _opt_state(model):
    """The optimizer's flat state arrays and step counter, created on demand."""
    if model._opt_state is None:
        n = model._params.size
        s2 = np.zeros(n if model.optimizer.n_state > 1 else 0, model.dtype)
        model._opt_state = dict(s1=np.zeros(n, model.dtype), s2=s2,
                                t=np.zeros(1, np.int64))
    return model._opt_state


def _validation(model, validation_data, X, T, sw, validation_split, n, y):
    """Split off validation rows; returns (X, T, sw, val) with val = (Xv, yv) or None."""
    if validation_data is not None and validation_split:
        raise ValueError("validation_data and validation_split cannot both be given")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (X_val, y_val)")
        Xv = as_features(validation_data[0], model.dtype, "validation_data")
        if Xv.shape[1] != X.shape[1]:
            raise ValueError(f"validation_data has {Xv.shape[1]} features but X has "
                             f"{X.shape[1]}")
        Tv, _, _ = model._encode_targets(validation_data[1], Xv.shape[0], fitting=False)
        return X, T, sw, (Xv, Tv)
    split = _validate.real(validation_split, "validation_split", 0.0, 1.0, high_open=True)
    if split == 0:
        return X, T, sw, None
    # a held-out tail, as Keras does: the last rows, before any shuffling
    n_val = int(math.ceil(n * split))
    if n_val >= n or n_val == 0:
        raise ValueError(f"validation_split={split} leaves no rows to train or validate on")
    cut = n - n_val
    val = (X[cut:], T[cut:])
    return X[:cut], T[:cut], (sw[:cut] if sw.size else sw), val


def fit(model, X, y, batch_size=32, epochs=1, shuffle=True, validation_data=None,
        lr_schedule=None, callbacks=None, verbose=0, sample_weight=None,
        validation_split=0.0, class_weight=None):
    """Train ``model`` (see ``Sequential.fit``). Every argument is checked before
    anything in the model changes."""
    if not model._compiled:
        raise ValueError("the model must be compiled before fit (call model.compile)")
    batch_size = _validate.positive_int(batch_size, "batch_size")
    epochs = _validate.nonneg_int(epochs, "epochs")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    lr_schedule = _schedules.check(lr_schedule)
    cbs = CallbackList(callbacks)
    X = as_features(X, model.dtype, "X")
    n = X.shape[0]
    if model._built and X.shape[1] != model.input_dim:
        raise ValueError(f"X has {X.shape[1]} features but the model expects {model.input_dim}")
    if not model._built:
        model._check_layers()
    T, classes, y_ndim = model._encode_targets(y, n, fitting=True)
    sw = check_sample_weight(sample_weight, n, model.dtype)
    if class_weight is not None:
        sw = _apply_class_weight(model, class_weight, T, sw, classes)
    X, T, sw, val = _validation(model, validation_data, X, T, sw, validation_split, n, y)
    n = X.shape[0]

    # ---- from here on the model changes
    if not model._built:
        model._build(X.shape[1])
    model._classes, model._y_ndim = classes, y_ndim
    opt = model.optimizer
    state = _opt_state(model)
    buf = getattr(model, "_buffers", None)
    if buf is None or buf.batch_size != batch_size or buf.grads.size != model._params.size:
        buf = model._buffers = _Buffers(model, batch_size)

    bs = min(batch_size, n)
    per_row = 6 * max(1, model._params.size)
    batches_per_call = max(1, int(_FLOPS_PER_CALL // (per_row * bs)))
    rows_per_call = batches_per_call * batch_size
    n_batches = -(-n // batch_size)
    threads = (blas_threads(model._largest_product(bs)) if model._use_blas.any() else None)

    history = History()
    all_losses = np.zeros(n_batches * epochs)
    corrects = np.zeros(n_batches * epochs)
    progress = _progress(verbose, n, epochs)
    cbs.on_train_begin(model)
    lr0 = opt.lr
    stop = False
    with limit_blas(threads):
        for _ in range(epochs):
            epoch = model._epoch
            lr = float(lr_schedule(epoch, lr0)) if lr_schedule is not None else lr0
            if not (lr > 0 and math.isfinite(lr)):
                raise ValueError(f"lr_schedule returned {lr!r} at epoch {epoch}; "
                                 "the learning rate must be positive and finite")
            hp = opt._hyper(lr)
            order = (model._shuffle_rng.permutation(n) if shuffle
                     else np.arange(n, dtype=np.int64))
            at = len(history.epoch) * n_batches
            done = 0
            progress.start(epoch)
            for start in range(0, n, rows_per_call):
                stop_row = min(n, start + rows_per_call)
                want = -(-(stop_row - start) // batch_size)
                bn_before = model._state.copy() if model._state.size else None
                got = train_batches(
                    X, T, sw, order, start, stop_row, batch_size,
                    model._spec, model._fspec, model._use_blas, model._params, buf.grads,
                    model._state, buf.bnbuf, buf.acts, buf.work, buf.d0, buf.d1,
                    buf.tbuf, buf.wbuf, model._wmask, model.l2, model._l2_per_row,
                    model._loss_code, opt.code, hp, state["s1"], state["s2"], state["t"],
                    model.seed, all_losses, corrects, at + done)
                done += got
                progress.update(stop_row - start if got == want else got * batch_size,
                                all_losses[at + done - 1] if done else float("nan"))
                if got < want:
                    if bn_before is not None:
                        model._state[...] = bn_before
                    history.stop_reason = (
                        f"loss became {all_losses[at + done]!r} at epoch {epoch}, batch "
                        f"{done}; training stopped with the last finite weights")
                    stop = True
                    break
            if stop:
                history.batch_losses = all_losses[:at + done + 1].copy()
                progress.close()
                if verbose:
                    print(history.stop_reason)
                break
            sizes = np.full(n_batches, batch_size, np.float64)
            sizes[-1] = n - batch_size * (n_batches - 1)
            logs = {"loss": float(all_losses[at:at + n_batches] @ sizes / n)}
            if model.is_classifier:
                logs["accuracy"] = float(corrects[at:at + n_batches].sum() / n)
            if val is not None:
                logs.update(_validate_epoch(model, *val))
            logs["lr"] = lr
            model._epoch += 1
            history._append(epoch, logs)
            history.batch_losses = all_losses[:at + n_batches].copy()
            progress.end(epoch, logs)
            if cbs.on_epoch_end(epoch, logs):
                break
    cbs.on_train_end(model)
    progress.close()
    return history


def _validate_epoch(model, Xv, Tv):
    from .kernels.losses import loss_grad
    Z = model._raw_outputs(Xv)
    loss, correct = loss_grad(Z, Tv, np.zeros(0, model.dtype), model._loss_code,
                              np.empty_like(Z))
    out = {"val_loss": float(loss) + model._l2_term()}
    if model.is_classifier:
        out["val_accuracy"] = float(correct) / Xv.shape[0]
    return out


def _apply_class_weight(model, class_weight, T, sw, classes):
    """Row weights = sample weights * weight of the row's class."""
    if not model.is_classifier:
        raise ValueError("class_weight needs a classification loss")
    col = T.argmax(axis=1) if T.shape[1] > 1 else T[:, 0].astype(np.int64)
    k = T.shape[1] if T.shape[1] > 1 else 2
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight={class_weight!r}: use a dict or 'balanced'")
        counts = np.bincount(col, minlength=k).astype(np.float64)
        per_class = np.where(counts > 0, len(col) / (k * np.maximum(counts, 1)), 0.0)
    elif isinstance(class_weight, dict):
        per_class = np.ones(k)
        labels = list(classes) if classes is not None else list(range(k))
        for label, weight in class_weight.items():
            matches = [i for i, c in enumerate(labels) if c == label]
            if not matches:
                raise ValueError(f"class_weight has label {label!r} not in y")
            per_class[matches[0]] = _validate.real(weight, f"class_weight[{label!r}]", 0.0)
    else:
        raise TypeError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
    w = per_class[col].astype(model.dtype)
    if sw.size:
        w *= sw
    if not w.sum() > 0:
        raise ValueError("class_weight gives every row a zero weight")
    return np.ascontiguousarray(w)


class _NoProgress:
    def start(self, epoch):
        pass

    def update(self, rows, loss):
        pass

    def end(self, epoch, logs):
        pass

    def close(self):
        pass


class _EpochLines(_NoProgress):
    def end(self, epoch, logs):
        print(f"epoch {epoch + 1}: " + " ".join(
            f"{k}={v:.4g}" for k, v in logs.items()), flush=True)


class _Bar(_NoProgress):
    """A tqdm bar per epoch over rows, with the loss and rows/s."""

    def __init__(self, n, epochs):
        self.n, self.epochs, self.bar = n, epochs, None

    def start(self, epoch):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.n, desc=f"epoch {epoch + 1}", unit="rows",
                        leave=True, dynamic_ncols=True, mininterval=0.2)

    def update(self, rows, loss):
        self.bar.update(rows)
        self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def end(self, epoch, logs):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
        self.bar.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _progress(verbose, n, epochs):
    if verbose == 1:
        return _Bar(n, epochs)
    return _EpochLines() if verbose == 2 else _NoProgress()
