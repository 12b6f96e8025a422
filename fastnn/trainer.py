"""The epoch loop: validation of fit's arguments, shuffling, schedules,
callbacks, progress, History, Ctrl-C and divergence. Python runs once per epoch
or per large slice of it; the minibatches themselves run inside one compiled
call (``kernels.network.train_batches``, or ``kernels.chunked.train_chunked``
when the model splits its batches into row chunks run in parallel; see
``run_batches``). Small data sets, whose epochs are shorter than a call's
share of work, train several epochs per call where nothing runs between
epochs but their logs (no callbacks, validation, schedule or progress
output; ``_epoch_group``): the same bits and logs as one epoch at a time.

Safe points. A compiled slice always applies whole minibatch updates, so the
model is consistent between slices:

* Ctrl-C: while ``fit`` runs in the main thread, the first SIGINT only sets a
  flag; training stops after the current slice (a fraction of a second), the
  model keeps the last completed update and ``fit`` returns the History so far
  with ``stop_reason`` set. A second Ctrl-C raises KeyboardInterrupt at once.
* Divergence: the kernel computes each batch's loss before applying its update
  and stops at the first non-finite one without applying it. ``fit`` then
  stops with a ``RuntimeWarning`` (and ``stop_reason``) and the model holds the
  last finite weights; BatchNorm running statistics are rebuilt to match them
  by replaying the epoch's finished batches from a snapshot (bitwise the same
  updates). A group of epochs that diverges goes back to its start and runs
  again one epoch at a time, which stops at the same batch. As in Keras, the
  epoch that diverged is logged (History, callbacks) with its non-finite loss,
  but does not count as an epoch (schedules and the next fit start there).
"""

import copy
import math
import signal
import sys
import threading
import time
import warnings

import numba
import numpy as np

from . import _validate, data
from . import schedules as _schedules
from .callbacks import CallbackList
from .data import as_features, check_sample_weight
from .kernels.chunked import train_chunked, train_workers
from .kernels.colsplit import train_colsplit, train_colsplit_workers
from .kernels.network import train_batches
from .threads import (
    CHECK_IN_SPINS,
    PathChooser,
    limit_blas,
    record_check_in,
    workers_usable,
)

# one compiled call handles about this many floating-point operations (tens
# of milliseconds on a gemm-bound network, at most a few tenths of a second),
# so progress, callbacks and Ctrl-C are seen several times per epoch; a row
# costs at least _MIN_FLOPS_PER_ROW (small nets are bound by per-row work, not
# arithmetic). Measured: at 3e8, W2 (784-256-128-10, batch 128) made one call
# per batch, and the ~25 us of Python around each call was 2.7% of its
# 2-thread epoch.
_FLOPS_PER_CALL = 3e9
_MIN_FLOPS_PER_ROW = 10_000


def rows_per_call(n_params, batch_size):
    """Rows one compiled call trains: whole batches of ``batch_size`` rows,
    about _FLOPS_PER_CALL of work, at least one batch."""
    per_row = max(6 * n_params, _MIN_FLOPS_PER_ROW)
    return max(1, int(_FLOPS_PER_CALL // (per_row * batch_size))) * batch_size


class History:
    """``history``: dict of per-epoch lists (loss, accuracy, val_loss,
    val_accuracy, lr); ``batch_losses``: every minibatch's loss, in order;
    ``epoch``: the model's epoch numbers trained by this fit; ``stop_reason``:
    None when every epoch ran, else why training stopped early."""

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
        self.wbuf = np.zeros(8 * batch_size, dtype)    # row weights, then loss scratch
        self.grads = np.zeros_like(model._params)
        self.bnbuf = np.zeros_like(model._state)
        # row chunks of a batch (kernels/chunked.py): one workspace row each
        self.n_chunks = nc = model._chunks(batch_size)
        self.chunk_rows = cr = -(-batch_size // nc)
        # and the first layer by columns (kernels/colsplit.py) where it pays
        self.col_parts = model._col_parts(nc)
        self.chunks = (ChunkSpace(model, nc, cr, batch_size if self.col_parts else 0)
                       if nc > 1 else None)
        self.chooser = PathChooser()


class ChunkSpace:
    """Workspaces for ``n`` row chunks (``kernels/chunked.py``) or row groups
    (``kernels/fullbatch.py``) of up to ``rows`` rows each: one row of every
    2-D array per chunk, each a whole-network workspace (see
    ``kernels/network.py``), plus per-chunk gradients and results; with
    ``batch_rows``, the whole-batch buffers of the first layer split by
    columns (``kernels/colsplit.py``), else empty ones."""

    def __init__(self, model, n, rows, batch_rows=0):
        dtype = model.dtype
        widths = model._widths
        total = sum(widths)
        self.acts2 = np.zeros((n, rows * total), dtype)
        self.work2 = np.zeros((n, rows * (total - widths[0])), dtype)
        self.d02 = np.zeros((n, rows * max(widths)), dtype)
        self.d12 = np.zeros_like(self.d02)
        self.tb2 = np.zeros((n, rows * model.n_outputs), dtype)
        self.wb2 = np.zeros((n, 8 * rows), dtype)
        self.grads2 = np.zeros((n, model._params.size), dtype)
        self.closs = np.zeros(n)
        self.ccorr = np.zeros(n)
        self.xb2 = np.zeros((2, batch_rows * widths[0]), dtype)   # X row-major, two batches
        self.zfull = np.zeros(batch_rows * widths[1], dtype)
        self.dfull = np.zeros_like(self.zfull)
        self.p_rest = model._first_layer_end() if batch_rows else 0


def run_batches(model, buf, X, T, sw, order, start, stop, batch_size, hp, state, l2,
                l2_per_row, seed, losses, corrects, at, epoch_rows=None, loss_scale=1.0):
    """Train on rows order[start:stop] (see ``kernels.network.train_batches``,
    whose result this returns): whole batches, or row chunks in parallel when
    ``buf`` splits batches (same results whatever the thread count).
    ``order`` holds one epoch's order, or several of ``epoch_rows`` each;
    ``loss_scale``: see ``train_batches``."""
    m = model
    if epoch_rows is None:
        epoch_rows = order.shape[0]
    if buf.n_chunks == 1:
        return train_batches(
            X, T, sw, order, start, stop, batch_size, epoch_rows,
            m._spec, m._fspec, m._use_blas, m._params, buf.grads, m._state, buf.bnbuf,
            buf.acts, buf.work, buf.d0, buf.d1, buf.tbuf, buf.wbuf, m._wmask, l2, l2_per_row,
            m._loss_code, m.optimizer.code, hp, state["s1"], state["s2"], state["t"], seed,
            losses, corrects, at, float(loss_scale))
    c = buf.chunks
    # train_chunked / train_colsplit take (*rows, parallel, *rest), their
    # workers' versions (n_workers, max_spins, *rows, *rest)
    rows = (X, T, sw, order, start, stop, batch_size, epoch_rows, buf.n_chunks, buf.chunk_rows)
    rest = (m._spec, m._fspec, m._use_blas, m._params, m._state, buf.bnbuf, c.acts2, c.work2,
            c.d02, c.d12, c.tb2, c.wb2, c.grads2, c.closs, c.ccorr)
    if buf.col_parts:
        train, workers = train_colsplit, train_colsplit_workers
        rows += (buf.col_parts,)
        rest += (c.xb2, c.zfull, c.dfull, c.p_rest)
    else:
        train, workers = train_chunked, train_workers
    rest += (m._wmask, l2, l2_per_row, m._loss_code, m.optimizer.code, hp, state["s1"],
             state["s2"], state["t"], seed, losses, corrects, at, float(loss_scale))
    with buf.chooser.call(buf.n_chunks, stop - start) as parallel:
        if parallel and workers_usable():
            done = workers(np.int64(numba.get_num_threads()), np.int64(CHECK_IN_SPINS),
                           *rows, *rest)
            record_check_in(done >= 0)
            if done >= 0:
                return done
        return train(*rows, parallel, *rest)


def _opt_state(model):
    """The optimizer's flat state arrays and step counter, created on demand."""
    if model._opt_state is None:
        n = model._params.size
        s2 = np.zeros(n if model.optimizer.n_state > 1 else 0, model.dtype)
        model._opt_state = dict(s1=np.zeros(n, model.dtype), s2=s2,
                                t=np.zeros(1, np.int64))
    return model._opt_state


# ------------------------------------------------------------------ checks
def _encode_with(model, y, n, classes, y_ndim, argument):
    """Encode validation targets with the label encoding this fit will commit
    (the model itself is not touched)."""
    view = copy.copy(model)
    view._classes, view._y_ndim = classes, y_ndim
    try:
        T, _, _ = view._encode_targets(y, n, fitting=False)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{argument}: {e}") from None
    return T


def _validation(model, validation_data, validation_split, X, T, sw, classes, y_ndim):
    """Split off validation rows: (X, T, sw, val), val a function of the model
    giving the end-of-epoch validation logs, or None.

    ``validation_split`` holds out the last rows of X (before any shuffling),
    as Keras does; pass ``validation_data`` for a stratified or random split."""
    if validation_data is not None and validation_split:
        raise ValueError("validation_data and validation_split cannot both be given")
    if validation_data is not None:
        return X, T, sw, _validation_data(model, validation_data, X.shape[1], classes, y_ndim)
    split = _validate.real(validation_split, "validation_split", 0.0, 1.0, high_open=True)
    if split == 0:
        return X, T, sw, None
    n = X.shape[0]
    n_val = int(math.ceil(n * split))
    if n_val >= n:
        raise ValueError(f"validation_split={split} leaves no rows to train on ({n} rows)")
    cut = n - n_val
    val = _validator(X[cut:], T[cut:], np.zeros(0, model.dtype))
    if sw.size and not sw[:cut].sum() > 0:
        raise ValueError("sample_weight: every training row left by validation_split has "
                         "weight zero")
    return X[:cut], T[:cut], (sw[:cut] if sw.size else sw), val


def check_validation_tuple(validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (X_val, y_val) or "
                         "(X_val, y_val, sample_weight_val)")


def _validation_data(model, validation_data, n_features, classes, y_ndim):
    """The end-of-epoch validation on in-memory ``validation_data``, its
    labels encoded as this fit will encode them."""
    check_validation_tuple(validation_data)
    Xv = as_features(validation_data[0], model.dtype, "validation_data")
    if Xv.shape[1] != n_features:
        raise ValueError(f"validation_data has {Xv.shape[1]} features but X has "
                         f"{n_features}")
    Tv = _encode_with(model, validation_data[1], Xv.shape[0], classes, y_ndim,
                      "validation_data")
    swv = (check_sample_weight(validation_data[2], Xv.shape[0], model.dtype,
                               "validation_data sample_weight")
           if len(validation_data) == 3 else np.zeros(0, model.dtype))
    return _validator(Xv, Tv, swv)


def _scheduled_lr(lr_schedule, epoch, lr0):
    """The epoch's learning rate, ``lr_schedule(epoch, lr0)`` asked once at the
    epoch's start (lr0 is the optimizer's rate then, which a callback such as
    ReduceLROnPlateau may have lowered), or lr0. A schedule may reach 0
    (CosineDecay does, at its default min_lr, once ``epoch >= epochs``):
    updates are then zero. Anything else that is not a finite number >= 0,
    or a schedule that raises ValueError/TypeError, fails the fit with
    ValueError (or TypeError) naming lr_schedule; ``_train`` then puts the
    model back as it was before the call."""
    if lr_schedule is None:
        lr = lr0
    else:
        try:
            lr = lr_schedule(epoch, lr0)
        except (TypeError, ValueError) as e:
            raise type(e)(f"lr_schedule failed at epoch {epoch}: {e}") from None
    try:
        ok = isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, bool) \
            and math.isfinite(lr) and lr >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        who = "lr_schedule" if lr_schedule is not None else "optimizer.lr"
        raise ValueError(f"{who} gave learning rate {lr!r} at epoch {epoch}; it must be "
                         "a finite number >= 0")
    return float(lr)


def _log_keys(model, has_val):
    keys = ["loss"] + (["accuracy"] if model.is_classifier else [])
    if has_val:
        keys += ["val_loss"] + (["val_accuracy"] if model.is_classifier else [])
    return keys + ["lr"]


# ------------------------------------------------------------------ fit
def fit(model, X, y, batch_size=32, epochs=1, shuffle=True, validation_data=None,
        lr_schedule=None, callbacks=None, verbose=0, sample_weight=None,
        validation_split=0.0, class_weight=None, memory_budget=None, block_rows=None,
        window_blocks=None):
    """Train ``model`` (see ``Sequential.fit``). Every argument is checked before
    anything in the model changes. The learning rate of an epoch is
    ``lr_schedule(epoch, optimizer.lr)`` (or ``optimizer.lr``), with
    ``optimizer.lr`` read at the start of every epoch, so a callback such as
    ``ReduceLROnPlateau`` may lower it between epochs.

    Data that ``data.is_streamed`` (memory maps, ``.npy`` paths, h5py/zarr)
    is streamed in shuffled windows (``streaming.py``); ``memory_budget``,
    ``block_rows`` and ``window_blocks`` shape that stream and are ignored for
    in-memory arrays."""
    return _train(model, X, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle,
                  validation_data=validation_data, lr_schedule=lr_schedule,
                  callbacks=callbacks, verbose=verbose, sample_weight=sample_weight,
                  validation_split=validation_split, class_weight=class_weight,
                  memory_budget=memory_budget, block_rows=block_rows,
                  window_blocks=window_blocks, advance=True, classes=None)


def partial_fit(model, X, y, sample_weight=None, batch_size=32, shuffle=True, classes=None,
                class_weight=None, verbose=0, memory_budget=None, block_rows=None,
                window_blocks=None):
    """One pass over the chunk (X, y), shuffled by the model's RNG (see
    ``Sequential.partial_fit``); the optimizer state and step count carry on,
    ``model._epoch`` does not advance (the pass is not an epoch: schedules and
    callbacks are fit's), and the learning rate is ``optimizer.lr``."""
    return _train(model, X, y, batch_size=batch_size, epochs=1, shuffle=shuffle,
                  validation_data=None, lr_schedule=None, callbacks=None, verbose=verbose,
                  sample_weight=sample_weight, validation_split=0.0,
                  class_weight=class_weight, memory_budget=memory_budget,
                  block_rows=block_rows, window_blocks=window_blocks, advance=False,
                  classes=classes)


def _train(model, X, y, *, batch_size, epochs, shuffle, validation_data, lr_schedule,
           callbacks, verbose, sample_weight, validation_split, class_weight,
           memory_budget, block_rows, window_blocks, advance, classes):
    if not model._compiled:
        raise ValueError("the model must be compiled before fit (call model.compile)")
    # batch_size=None is Keras's spelling of its default, 32
    batch_size = _validate.positive_int(32 if batch_size is None else batch_size, "batch_size")
    epochs = _validate.nonneg_int(epochs, "epochs")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    if isinstance(verbose, (bool, np.bool_)):      # verbose=True/False as in scikit-learn
        verbose = int(verbose)
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2 (or a bool), got {verbose!r}")
    lr_schedule = _schedules.check(lr_schedule)
    cbs = CallbackList(callbacks)
    layout = dict(memory_budget=data.check_memory_budget(memory_budget),
                  block_rows=(None if block_rows is None
                              else _validate.positive_int(block_rows, "block_rows")),
                  window_blocks=(None if window_blocks is None
                                 else _validate.positive_int(window_blocks, "window_blocks")))
    enc = model if classes is None else _declared_classes(model, classes)
    streamed = data.is_streamed(X)
    if streamed:
        from . import streaming
        prep = streaming.prepare_fit(model, enc, X, y, sample_weight, validation_data,
                                     validation_split, class_weight, batch_size, layout)
        n_features, classes, y_ndim, val = prep.n_features, prep.classes, prep.y_ndim, prep.val
    else:
        X = as_features(X, model.dtype, "X")
        n = X.shape[0]
        if model._built and X.shape[1] != model.input_dim:
            raise ValueError(f"X has {X.shape[1]} features but the model expects "
                             f"{model.input_dim}")
        if not model._built:
            model._check_layers()
        T, classes, y_ndim = enc._encode_targets(y, n, fitting=True)
        sw = check_sample_weight(sample_weight, n, model.dtype)
        X, T, sw, val = _validation(model, validation_data, validation_split, X, T, sw,
                                    classes, y_ndim)
        if class_weight is not None:
            sw = _apply_class_weight(model, class_weight, T, sw, classes)
        n_features = X.shape[1]
    cbs.check_keys(_log_keys(model, val is not None))

    # ---- from here on the model changes. What fails from here (a streamed
    # fit meets its feature values only now, a schedule is asked at each
    # epoch's start, a callback may raise) rolls the model back to where it
    # was; without those nothing user-given runs, and the snapshot (13 us of
    # a 150 us one-epoch fit of a small net, measured) is skipped
    rollback = (Rollback(model) if streamed or lr_schedule is not None or cbs.callbacks
                else None)
    loop = None
    try:
        if not model._built:
            model._build(n_features)
        model._classes, model._y_ndim = classes, y_ndim
        loop = prep.loop(model) if streamed else _Loop(model, X, T, sw, batch_size)
        history = _run(model, loop, epochs, lr_schedule, shuffle, val, verbose, cbs, advance)
    except BaseException as e:
        if rollback is not None and not isinstance(e, KeyboardInterrupt):
            rollback.restore()
        raise
    finally:
        if loop is not None:
            loop.close()
    return history


class Rollback:
    """Everything a fit may change in a model, to put back when the call fails
    part-way (bad values met in a streamed file's blocks, a schedule's bad
    rate, an exception from a callback), so a failed fit changes nothing."""

    def __init__(self, model):
        self.model = model
        self.attrs = dict(model.__dict__)
        self.optimizer = dict(model.optimizer.__dict__)
        self.layers = [(layer, dict(layer.__dict__)) for layer in model.layers]
        arrays = []
        if model._built:
            arrays += [model._params, model._state]
            if model._opt_state is not None:
                arrays += [model._opt_state[key] for key in ("s1", "s2", "t")]
        self.arrays = [(a, a.copy()) for a in arrays]
        self.rng = model._shuffle_rng.bit_generator.state     # a fresh dict each read

    def restore(self):
        m = self.model
        for a, saved in self.arrays:
            a[...] = saved
        m.__dict__.clear()
        m.__dict__.update(self.attrs)
        m.optimizer.__dict__.clear()
        m.optimizer.__dict__.update(self.optimizer)
        for layer, attrs in self.layers:
            layer.__dict__.clear()
            layer.__dict__.update(attrs)
        m._shuffle_rng.bit_generator.state = self.rng


def _run(model, loop, epochs, lr_schedule, shuffle, val, verbose, cbs, advance):
    """The epochs of one fit (or the one pass of partial_fit)."""
    history = History()
    progress = _progress(verbose, loop.n, epochs)
    cbs.on_train_begin(model)
    # several epochs per compiled call where nothing runs between epochs but
    # their logs: no callbacks, validation, schedule or progress output
    group = (loop.rows_per_call // loop.n if type(loop) is _Loop and advance and val is None
             and lr_schedule is None and verbose == 0 and not cbs.callbacks else 1)
    with _InterruptGuard() as interrupt, limit_blas(loop.threads):
        try:
            left = epochs
            while left > 0:
                if min(left, group) > 1:
                    reason, ran = _epoch_group(model, loop, history, min(left, group),
                                               shuffle, interrupt, cbs)
                else:
                    reason, ran = _one_epoch(model, loop, history, lr_schedule, shuffle, val,
                                             progress, interrupt, cbs, advance), 1
                left -= ran
                if reason is not None:
                    history.stop_reason = reason
                    break
        except KeyboardInterrupt:
            # only when no SIGINT handler could be installed (not the main thread,
            # or another handler in place); kernels still apply whole batches
            history.stop_reason = loop.interrupted(model, len(history.epoch))
        finally:
            progress.close()
    history.batch_losses = loop.batch_losses()
    cbs.on_train_end(model)
    if history.stop_reason is not None and history.stop_reason.startswith("interrupted"):
        print(f"fastnn: {history.stop_reason}", file=sys.stderr, flush=True)
    return history


def _declared_classes(model, classes):
    """A view of the model whose label encoding uses the declared ``classes``
    (all labels, as scikit-learn's partial_fit takes them); the model itself
    is not touched. Declared classes must match those of an earlier fit."""
    if not model.is_classifier:
        raise ValueError("classes is only for classification losses")
    arr = _validate_classes_array(classes)
    view = copy.copy(model)
    view._classes = None
    try:
        _, found, _ = view._encode_targets(arr, arr.shape[0], fitting=True)
    except (ValueError, TypeError) as e:
        raise type(e)(f"classes: {e}") from None
    if model.loss == "binary_cross_entropy":
        found = np.array([0, 1], dtype=arr.dtype)
    if model._classes is not None:
        if not (len(found) == len(model._classes)
                and all(_same_label(a, b) for a, b in zip(found, model._classes))):
            raise ValueError(f"classes {np.asarray(found).tolist()[:10]} differ from the "
                             f"model's classes {np.asarray(model._classes).tolist()[:10]}")
        return model
    if model.loss == "softmax_cross_entropy" and len(np.unique(arr)) != arr.shape[0]:
        raise ValueError("classes must not repeat a label")
    view._classes = found
    return view


def _validate_classes_array(classes):
    arr = data._as_array(classes, "classes")
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"classes must be a non-empty 1-D list of labels, got shape "
                         f"{arr.shape}")
    return arr


def _one_epoch(model, loop, history, lr_schedule, shuffle, val, progress, interrupt, cbs,
               advance=True):
    """Train one epoch and run the callbacks; returns a stop reason or None.
    ``advance=False`` (partial_fit): the pass does not count as an epoch."""
    epoch = model._epoch
    lr = _scheduled_lr(lr_schedule, epoch, model.optimizer.lr)
    order = loop.plan(shuffle)
    progress.start(epoch)
    t0 = time.perf_counter()
    done, losses, corrects, diverged = loop.epoch(order, lr, progress, interrupt)
    if diverged:
        bad = float(losses[done]) if done < len(losses) else float("nan")
        reason = loop.diverged(model, order, lr, epoch, done, bad)
        # logged as Keras logs it: the epoch's loss is the non-finite one, so
        # History and callbacks (TerminateOnNaN, CSVLogger) see the divergence;
        # the weights are the last finite ones, and the epoch does not count
        logs = {"loss": bad}
        if model.is_classifier:
            rows = min(done * loop.batch_size, loop.n)
            logs["accuracy"] = float(corrects[:done].sum() / rows) if rows else float("nan")
        _log_epoch(model, history, progress, cbs, val, epoch, logs, lr, t0)
        return reason
    if done < loop.n_batches:
        return loop.interrupted(model, len(history.epoch), done)
    if advance:
        model._epoch += 1
    stoppers = _log_epoch(model, history, progress, cbs, val, epoch,
                          _train_logs(model, loop, losses, corrects), lr, t0)
    if stoppers:
        return f"stopped by {', '.join(stoppers)} after epoch {epoch}"
    if interrupt.requested:
        return loop.interrupted(model, len(history.epoch))
    return None


def _log_epoch(model, history, progress, cbs, val, epoch, logs, lr, t0):
    """Complete an epoch's training ``logs`` (validation metrics, the rate),
    record them in History and the progress bar and hand them to the
    callbacks; returns the names of the callbacks that ask to stop."""
    if val is not None:
        logs.update(val(model))
    logs["lr"] = lr
    history._append(epoch, logs)
    progress.end(epoch, logs, time.perf_counter() - t0)
    return cbs.on_epoch_end(epoch, logs)


def _train_logs(model, loop, losses, corrects):
    """An epoch's training logs from its batches' losses and correct counts."""
    logs = {"loss": float(losses @ loop.sizes / loop.n)}
    if model.is_classifier:
        logs["accuracy"] = float(corrects.sum() / loop.n)
    return logs


def _epoch_group(model, loop, history, g, shuffle, interrupt, cbs):
    """Train ``g`` epochs in one compiled call: the same bits, logs and draws
    from the model's RNG as ``g`` calls of ``_one_epoch`` with no callbacks,
    validation, schedule or progress output (``_run`` checks). Returns (stop
    reason or None, epochs run). A loss that is not finite sends the group
    back to its start (weights, optimizer and RNG) and through ``_one_epoch``,
    one epoch at a time, the path that handles it."""
    epoch0 = model._epoch
    lr = _scheduled_lr(None, epoch0, model.optimizer.lr)
    rng = model._shuffle_rng.bit_generator
    drawn_from = rng.state
    orders = np.concatenate([loop.plan(shuffle) for _ in range(g)])
    try:
        done, losses, corrects = loop.epochs(orders, g, lr)
    except KeyboardInterrupt:
        rng.state = drawn_from
        raise
    nb = loop.n_batches
    if done < g * nb:
        loop.restore()
        rng.state = drawn_from
        for e in range(g):
            reason = _one_epoch(model, loop, history, None, shuffle, None, _NoProgress(),
                                interrupt, cbs)
            if reason is not None:
                return reason, e + 1
        return None, g
    for e in range(g):
        logs = _train_logs(model, loop, losses[e * nb:(e + 1) * nb],
                           corrects[e * nb:(e + 1) * nb])
        logs["lr"] = lr
        model._epoch += 1
        history._append(epoch0 + e, logs)
    if interrupt.requested:
        return loop.interrupted(model, len(history.epoch)), g
    return None, g


class _Loop:
    """The compiled slices of one fit call: buffers, slice size, losses so far."""

    def __init__(self, model, X, T, sw, batch_size, n=None):
        self.model, self.X, self.T, self.sw = model, X, T, sw
        self.n = n = X.shape[0] if n is None else n
        self.batch_size = batch_size
        self.state = _opt_state(model)
        buf = getattr(model, "_buffers", None)
        if buf is None or buf.batch_size != batch_size or buf.grads.size != model._params.size \
                or buf.acts.dtype != model.dtype:
            buf = model._buffers = _Buffers(model, batch_size)
        self.buf = buf
        buf.chooser.begin()
        bs = min(batch_size, n)
        self.rows_per_call = rows_per_call(model._params.size, bs) // bs * batch_size
        self.n_batches = -(-n // batch_size)
        self.sizes = np.full(self.n_batches, batch_size, np.float64)
        self.sizes[-1] = n - batch_size * (self.n_batches - 1)
        model._use_blas = model._blas_layers(min(bs, buf.chunk_rows))
        self.threads = 1 if model._use_blas.any() else None
        self._losses = []            # one array per epoch (partial for the last)
        self._t_epoch = int(self.state["t"][0])

    def plan(self, shuffle):
        """The epoch's row order: a fresh permutation from the model's RNG."""
        n = self.n
        return self.model._shuffle_rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)

    def close(self):
        pass

    def _call(self, order, start, stop, hp, losses, corrects, at, epoch_rows=None):
        m = self.model
        return run_batches(m, self.buf, self.X, self.T, self.sw, order, start, stop,
                           self.batch_size, hp, self.state, m.l2, m._l2_per_row, m.seed,
                           losses, corrects, at, epoch_rows)

    def _start(self):
        """Snapshot the state the coming epoch(s) start from (see ``restore``)."""
        m = self.model
        self._snapshot = (m._params.copy(), m._state.copy(), self.state["s1"].copy(),
                          self.state["s2"].copy(), self.state["t"].copy())
        self._t_epoch = int(self.state["t"][0])

    def restore(self):
        """Back to the state of the last ``_start``."""
        m = self.model
        params, bn, s1, s2, t = self._snapshot
        m._params[...] = params
        m._state[...] = bn
        self.state["s1"][...] = s1
        self.state["s2"][...] = s2
        self.state["t"][...] = t

    def epochs(self, orders, g, lr):
        """Train ``g`` whole epochs, ``orders`` their row orders end to end, in
        one compiled call (``rows_per_call`` holds them all). Returns (batches
        done, losses, corrects): fewer batches than the epochs have means a
        loss was not finite. A KeyboardInterrupt (raised only where no SIGINT
        handler could be installed) undoes the whole group: the model is left
        at the end of the last epoch logged."""
        m = self.model
        self._start()
        nb = self.n_batches
        losses = np.zeros(g * nb)
        corrects = np.zeros(g * nb)
        try:
            done = self._call(orders, 0, g * self.n, m.optimizer._hyper(lr), losses, corrects,
                              0, self.n)
        except KeyboardInterrupt:
            self.restore()
            self._losses.append(losses[:0])
            raise
        if done == g * nb:
            self._losses.extend(losses[e * nb:(e + 1) * nb] for e in range(g))
        return done, losses, corrects

    def epoch(self, order, lr, progress, interrupt):
        """Run the epoch's batches in slices. Returns (batches applied, losses,
        corrects, diverged); stops early on divergence or a Ctrl-C request."""
        m = self.model
        self._start()
        hp = m.optimizer._hyper(lr)
        losses = np.zeros(self.n_batches)
        corrects = np.zeros(self.n_batches)
        self._losses.append(losses)
        done, end = self._slices(order, self.n, hp, losses, corrects, 0, progress, interrupt)
        return done, losses, corrects, end == "diverged"

    def _slices(self, order, stop, hp, losses, corrects, done, progress, interrupt):
        """Train on rows order[:stop] in compiled slices of ``rows_per_call``
        rows, recording from batch ``done`` on. Returns (batches done, end):
        end is None when every slice ran, "diverged" when a loss was not finite
        (that batch's update not applied), "interrupted" after a Ctrl-C."""
        bs = self.batch_size
        for start in range(0, stop, self.rows_per_call):
            end = min(stop, start + self.rows_per_call)
            want = -(-(end - start) // bs)
            got = self._call(order, start, end, hp, losses, corrects, done)
            done += got
            progress.update(got * bs if got < want else end - start,
                            losses[done - 1] if done else float("nan"))
            if got < want:
                self._losses[-1] = losses[:done + 1]
                return done, "diverged"
            if interrupt.requested:
                self._losses[-1] = losses[:done]
                return done, "interrupted"
        return done, None

    def diverged(self, model, order, lr, epoch, done, loss):
        """Leave the model with the weights (and matching BatchNorm statistics)
        of the last finite update; warn; return the stop reason."""
        if model._state.size or not np.isfinite(model._params).all():
            self._replay(order, lr, done)
            if not np.isfinite(model._params).all() and done > 0:
                done -= 1          # that update itself produced non-finite weights
                self._replay(order, lr, done)
        msg = (f"loss became {float(loss)!r} at epoch {epoch}, batch {done}: training "
               "stopped and the model keeps the weights of the last finite update "
               "(try a lower learning rate, or check the data)")
        if not np.isfinite(model._params).all():
            msg = (f"loss became {float(loss)!r} at epoch {epoch}: training stopped, but the "
                   "weights were already non-finite when the epoch began")
        warnings.warn(f"fastnn: {msg}", RuntimeWarning, stacklevel=5)
        return f"diverged: {msg}"

    def _replay(self, order, lr, done):
        """Restore the epoch-start snapshot and re-apply its first ``done``
        batches: the same updates, bitwise (same order, steps and seed)."""
        m = self.model
        self.restore()
        if done:
            scratch = np.zeros(done)
            self._call(order, 0, min(self.n, done * self.batch_size),
                       m.optimizer._hyper(lr), scratch, np.zeros(done), 0)

    def interrupted(self, model, epochs_done, done=None):
        if done is None:           # KeyboardInterrupt caught: count applied steps
            done = int(self.state["t"][0]) - self._t_epoch
            if self._losses and 0 <= done < self.n_batches:
                self._losses[-1] = self._losses[-1][:done]
        if 0 < done < self.n_batches:
            where = f"after {done} of {self.n_batches} batches of epoch {model._epoch}"
        else:
            where = f"after {epochs_done} complete epoch(s)"
        return (f"interrupted (Ctrl-C) {where}; the model holds the last completed "
                "update")

    def batch_losses(self):
        return np.concatenate(self._losses) if self._losses else np.zeros(0)


def _validator(Xv, Tv, swv):
    """The end-of-epoch validation: model -> {"val_loss", "val_accuracy"}."""
    return lambda model: _validate_epoch(model, Xv, Tv, swv)


def _validate_epoch(model, Xv, Tv, swv):
    loss, correct = model._loss_of_outputs(model._raw_outputs(Xv), Tv, swv)
    out = {"val_loss": float(loss) + model._l2_term()}
    if model.is_classifier:
        out["val_accuracy"] = float(correct) / Xv.shape[0]
    return out


def _apply_class_weight(model, class_weight, T, sw, classes):
    """Row weights = sample weights * weight of the row's class (see
    ``_class_weight_table``)."""
    if not model.is_classifier:
        raise ValueError("class_weight needs a classification loss")
    col, k = _label_column(model, T)
    counts = np.bincount(col, minlength=k).astype(np.float64)
    per_class = _class_weight_table(model, class_weight, counts, classes)
    w = per_class[col].astype(model.dtype)
    if sw.size:
        w *= sw
    if not w.sum() > 0:
        raise ValueError("class_weight gives every row a zero weight")
    return np.ascontiguousarray(w)


def _label_column(model, T):
    """(class index of each row of encoded targets T, number of classes)."""
    if T.shape[1] == 1:
        return T[:, 0].astype(np.int64), 2
    if model.loss == "softmax_cross_entropy":
        return T.argmax(axis=1), T.shape[1]
    raise ValueError("class_weight needs a single-label target (binary_cross_entropy "
                     "with several outputs is multi-label)")


def _class_weight_table(model, class_weight, counts, classes):
    """Weight of each class. "balanced" gives class c the weight
    n / (n_classes * count_c), as scikit-learn does; a dict maps labels to
    weights (labels left out weigh 1). ``counts``: rows per class."""
    k = len(counts)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight={class_weight!r}: use a dict or 'balanced'")
        present = int((counts > 0).sum())
        return np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0)
    if isinstance(class_weight, dict):
        per_class = np.ones(k)
        labels = np.asarray(classes).tolist() if classes is not None else list(range(k))
        for label, weight in class_weight.items():
            matches = [i for i, c in enumerate(labels) if _same_label(c, label)]
            if not matches:
                raise ValueError(f"class_weight has label {label!r}, which is not a class "
                                 f"of y ({labels[:10]})")
            per_class[matches[0]] = _validate.real(weight, f"class_weight[{label!r}]", 0.0)
        return per_class
    raise TypeError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")


def _same_label(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------ Ctrl-C
class _InterruptGuard:
    """Defers SIGINT while fit runs: the first Ctrl-C sets ``requested`` (the
    loop stops at its next safe point); a second raises KeyboardInterrupt.
    Installed only from the main thread over Python's default handler."""

    def __enter__(self):
        self.requested = False
        self._old = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ------------------------------------------------------------------ progress
class _NoProgress:
    def start(self, epoch):
        pass

    def update(self, rows, loss):
        pass

    def end(self, epoch, logs, seconds):
        pass

    def close(self):
        pass


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())


class _EpochLines(_NoProgress):
    """verbose=2: one line per epoch."""

    def __init__(self, n, epochs):
        self.n, self.epochs, self.count = n, epochs, 0

    def end(self, epoch, logs, seconds):
        self.count += 1
        rate = self.n / seconds if seconds > 0 else float("inf")
        print(f"epoch {epoch + 1} ({self.count}/{self.epochs}) - {seconds:.3g}s - "
              f"{rate:,.0f} rows/s - {_fmt(logs)}", flush=True)


class _Bar(_NoProgress):
    """verbose=1: a tqdm bar per epoch over rows, with the loss and rows/s,
    updated after every compiled slice (several times on long epochs)."""

    def __init__(self, n, epochs):
        self.n, self.epochs, self.bar, self.count = n, epochs, None, 0

    def start(self, epoch):
        from tqdm.auto import tqdm
        self.count += 1
        self.bar = tqdm(total=self.n, desc=f"epoch {epoch + 1} ({self.count}/{self.epochs})",
                        unit="rows", unit_scale=True, leave=True, dynamic_ncols=True,
                        mininterval=0.2)

    def update(self, rows, loss):
        self.bar.set_postfix_str(f"loss: {loss:.4g}", refresh=False)
        self.bar.update(rows)

    def end(self, epoch, logs, seconds):
        self.bar.set_postfix_str(_fmt(logs), refresh=False)
        self.bar.close()
        self.bar = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(verbose, n, epochs):
    if verbose == 1:
        return _Bar(n, epochs)
    return _EpochLines(n, epochs) if verbose == 2 else _NoProgress()
