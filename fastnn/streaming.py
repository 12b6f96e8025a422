"""Training and inference on data that is not in memory, with bounded memory.

``fit`` streams what ``data.is_streamed`` accepts (memory maps, ``.npy``
paths, h5py/zarr/dask arrays): the rows are read in contiguous blocks, never
all at once (see ``data.py`` for the windowed shuffle and the memory budget).

Training (``StreamLoop``):

* Before anything changes, one pass over the targets (and row weights) finds
  the label classes when they are not known yet (the union of each block's
  labels, then the same rule as in memory), checks every label and weight, and
  counts the classes for ``class_weight="balanced"``. Targets are a small
  fraction of the data; the features are checked block by block as they are
  read, and a bad value met during training rolls the model back to where it
  was before the call (``trainer.Rollback``), so a failed fit still changes
  nothing.
* Two window buffers: a background thread (one worker) reads the next window's
  blocks, converts them to the model's dtype, encodes their targets and
  weights, while the compiled kernel (which releases the GIL) trains on the
  current window, rows in a fresh random order from the model's RNG.
* Minibatches are full across window boundaries: the rows left over at the
  end of a window (fewer than a batch) open the next one, so an epoch has the
  same ``ceil(n / batch_size)`` batches as in memory, all full but the last.
  Every row is visited exactly once per epoch. When the rows fit in one window
  the epoch is exactly the in-memory one (same permutation, same batches:
  bitwise the same weights); with ``shuffle=False`` it always is.
* Divergence: each window starts from a snapshot of the weights and optimizer
  state, and a window that leaves non-finite weights is caught at its end, so
  ``fit`` stops with the last finite weights, as in memory (the replay covers
  the current window only). Ctrl-C, callbacks, progress and History are the
  trainer's, unchanged.

Inference (``outputs``): blocks of a multiple of the predict block size are
read (again one ahead, in the background) and pushed through the same
compiled ``predict_rows`` calls as in memory, so streamed predictions equal
in-memory ones bitwise; each block's outputs are turned into labels or
probabilities at once, so only the per-row results are held whole.
"""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _validate, data
from .kernels.network import predict_rows
from .model import PREDICT_BLOCK
from .threads import inference_threads, single_threaded_blas
from .trainer import (
    _class_weight_table,
    _label_column,
    _Loop,
    _opt_state,
    check_validation_tuple,
)
from .trainer import _validation_data as _in_memory_validation


# ------------------------------------------------------------------ fit: set-up
class _Prepared:
    """What ``trainer._train`` needs from a streamed fit, checked up front."""

    def __init__(self, n_features, classes, y_ndim, val, loop):
        self.n_features, self.classes, self.y_ndim = n_features, classes, y_ndim
        self.val = val
        self.loop = loop


def prepare_fit(model, enc, X, y, sample_weight, validation_data, validation_split,
                class_weight, batch_size, layout):
    """Check everything a streamed fit can check without touching the model
    (shapes; every target, weight and validation label, in one pass over the
    targets) and return a ``_Prepared``; ``enc`` is the model or a view of it
    with declared classes."""
    xsrc = data.feature_source(X, "X")
    n, d = xsrc.shape
    if model._built and d != model.input_dim:
        raise ValueError(f"X has {d} features but the model expects {model.input_dim}")
    if not model._built:
        model._check_layers()
    ysrc = data.target_source(y, n, "y")
    swsrc = data.weight_source(sample_weight, n)
    if validation_data is not None and validation_split:
        raise ValueError("validation_data and validation_split cannot both be given")
    split = _validate.real(validation_split, "validation_split", 0.0, 1.0, high_open=True)
    k = model.n_outputs
    dtype = model.dtype
    scan_rows = _scan_rows(ysrc, k, dtype, layout)
    classes, y_ndim, labels_checked = _find_classes(enc, ysrc, n, scan_rows)
    view = _encoder(model, classes, y_ndim)
    cut = n
    if split:
        n_val = int(np.ceil(n * split))
        if n_val >= n:
            raise ValueError(f"validation_split={split} leaves no rows to train on ({n} rows)")
        cut = n - n_val
    need_counts = class_weight is not None
    if need_counts and not model.is_classifier:
        raise ValueError("class_weight needs a classification loss")
    counts, wsum = _scan_targets(view, ysrc.rows(0, cut), None if swsrc is None
                                 else swsrc.rows(0, cut), scan_rows, need_counts, "y",
                                 labels_checked)
    if swsrc is not None and not wsum > 0:
        if cut < n:
            raise ValueError("sample_weight: every training row left by validation_split "
                             "has weight zero")
        raise ValueError("sample_weight must not be all zero")
    val = None
    if cut < n:
        _scan_targets(view, ysrc.rows(cut, n), None, scan_rows, False, "y", labels_checked)
        val = _stream_validator(xsrc.rows(cut, n), ysrc.rows(cut, n), None,
                                layout["memory_budget"])
    elif validation_data is not None:
        val = _streamed_validation(model, view, validation_data, d, layout, scan_rows)
    per_class = None
    if class_weight is not None:
        per_class = _class_weight_table(model, class_weight, counts[0], classes)
        if not float(per_class @ counts[1]) > 0:
            raise ValueError("class_weight gives every row a zero weight")
    train = (xsrc.rows(0, cut), ysrc.rows(0, cut),
             None if swsrc is None else swsrc.rows(0, cut))

    def loop(model):
        feed = _Feed(model, view, *train, per_class, batch_size, layout)
        return StreamLoop(model, feed, batch_size)
    return _Prepared(d, classes, y_ndim, val, loop)


def _scan_rows(ysrc, k, dtype, layout):
    """Rows per block of the target pass: its scratch (raw labels, encoded
    targets and their temporaries) within a fraction of the budget."""
    width = max(1, int(np.prod(ysrc.shape[1:])))
    row_bytes = 4 * (ysrc.dtype.itemsize * width + np.dtype(dtype).itemsize * k + 16)
    return max(1024, int(layout["memory_budget"] // (4 * row_bytes)))


def _find_classes(enc, ysrc, n, rows):
    """(classes, y_ndim, labels_checked) as an in-memory fit would find the
    encoding on the whole y: class labels of a first fit come from every
    block's labels (their union, or for integers just their range), and are
    then all known to be valid (labels_checked)."""
    model = enc
    one_hot = len(ysrc.shape) == 2 and ysrc.shape[1] > 1
    if model.loss == "softmax_cross_entropy" and model._classes is None and not one_hot:
        k = model.n_outputs
        labels = None
        if ysrc.dtype.kind in "iu":           # all in 0..k-1? (then the classes are those)
            low, high = _label_range(ysrc, rows)
            if low >= 0 and high < k:
                labels = np.array([low, high], dtype=ysrc.dtype)
        if labels is None:
            for a, b in ysrc.blocks(rows):
                u = _unique(data.as_targets_array(ysrc.read(a, b), b - a).reshape(-1))
                labels = u if labels is None else _unique(np.concatenate([labels, u]))
        _, classes, y_ndim = model._encode_targets(labels, len(labels), fitting=True)
        return classes, y_ndim, True
    first = ysrc.read(0, min(n, rows))
    _, classes, y_ndim = model._encode_targets(first, first.shape[0], fitting=True)
    return classes, y_ndim, False


def _label_range(ysrc, rows):
    """(min, max) of integer labels, block by block."""
    low = high = None
    for a, b in ysrc.blocks(rows):
        yb = ysrc.read(a, b)
        lo, hi = yb.min(), yb.max()
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    return low, high


def _unique(y):
    try:
        return np.unique(y)
    except TypeError:
        raise TypeError("y: labels must be of one sortable type") from None


def _encoder(model, classes, y_ndim):
    """A view of the model that encodes targets with the fit's label encoding
    (the model itself is not touched)."""
    view = copy.copy(model)
    view._classes, view._y_ndim = classes, y_ndim
    return view


def _scan_targets(view, ysrc, swsrc, rows, need_counts, argument, labels_checked=False):
    """Check every label (encoding each block; skipped when ``labels_checked``)
    and every weight. Returns ((rows per class, weight per class) or None
    unless ``need_counts``, weight sum)."""
    counts = None
    wsum = 0.0
    if labels_checked and swsrc is None and not need_counts:
        return counts, wsum
    for a, b in ysrc.blocks(rows):
        w = None
        if swsrc is not None:
            w = data.weights_block(swsrc.read(a, b), np.float64, swsrc.argument)
            wsum += float(w.sum())
        if labels_checked and not need_counts:
            continue
        T = _encode_block(view, ysrc.read(a, b), b - a, argument)
        if need_counts:
            col, k = _label_column(view, T)
            if counts is None:
                counts = (np.zeros(k), np.zeros(k))
            counts[0][:] += np.bincount(col, minlength=k)
            counts[1][:] += np.bincount(col, weights=w, minlength=k)
    return counts, wsum


def _encode_block(view, yb, m, argument):
    try:
        T, _, _ = view._encode_targets(yb, m, fitting=False)
    except (ValueError, TypeError) as e:
        if argument == "y":
            raise
        raise type(e)(f"{argument}: {e}") from None
    return T


def _streamed_validation(model, view, validation_data, d, layout, scan_rows):
    """The end-of-epoch validation for validation_data given to a streamed
    fit: streamed when its X is, else as the in-memory trainer does it."""
    check_validation_tuple(validation_data)
    Xv = validation_data[0]
    if not data.is_streamed(Xv):
        return _in_memory_validation(model, validation_data, d, view._classes, view._y_ndim)
    xsrc = data.feature_source(Xv, "validation_data")
    if xsrc.shape[1] != d:
        raise ValueError(f"validation_data has {xsrc.shape[1]} features but X has {d}")
    nv = xsrc.n_rows
    ysrc = data.target_source(validation_data[1], nv, "validation_data")
    swsrc = (data.weight_source(validation_data[2], nv, "validation_data sample_weight")
             if len(validation_data) == 3 else None)
    _, wsum = _scan_targets(view, ysrc, swsrc, scan_rows, False, "validation_data")
    if swsrc is not None and not wsum > 0:
        raise ValueError("validation_data sample_weight must not be all zero")
    return _stream_validator(xsrc, ysrc, swsrc, layout["memory_budget"])


def _stream_validator(xsrc, ysrc, swsrc, budget):
    def validate(model):
        logs = evaluate(model, xsrc, ysrc, swsrc, budget)
        return {f"val_{key}": value for key, value in logs.items()}
    return validate


# ------------------------------------------------------------------ fit: reading
class _Slot:
    """One window's buffers: ``carry`` rows left over from the previous
    window, then up to ``capacity`` rows read from the source."""

    def __init__(self, carry, capacity, d, k, dtype, weighted):
        rows = carry + capacity
        self.X = np.empty((rows, d), dtype)
        self.T = np.empty((rows, k), dtype)
        self.sw = np.empty(rows if weighted else 0, dtype)
        self.rows = 0


class _Feed:
    """The rows of one streamed fit: sources, the layout of the stream, and
    ``fill`` (run in the reader thread) that reads a window into a slot."""

    def __init__(self, model, view, xsrc, ysrc, swsrc, per_class, batch_size, layout):
        self.xsrc, self.ysrc, self.swsrc = xsrc, ysrc, swsrc
        self.view = view
        self.per_class = per_class
        self.n = xsrc.n_rows
        self.carry = batch_size
        d, k = xsrc.shape[1], model.n_outputs
        weighted = swsrc is not None or per_class is not None
        itemsize = model.dtype.itemsize
        row_bytes = itemsize * (d + k + weighted) + 8
        self.block_rows, self.window_blocks = data.stream_layout(row_bytes, **layout)
        capacity = min(self.n, self.block_rows * self.window_blocks)
        self.slots = [_Slot(batch_size, capacity, d, k, model.dtype, weighted)
                      for _ in range(2)]

    def plan(self, rng, shuffle):
        return data.window_plan(self.n, self.block_rows, self.window_blocks, rng, shuffle)

    def fill(self, slot, blocks):
        """Read ``blocks`` (a window) into ``slot`` after its carry rows."""
        pos = self.carry
        for a, b in blocks:
            m = b - a
            data.read_features(self.xsrc, a, b, slot.X[pos:pos + m])
            T = _encode_block(self.view, self.ysrc.read(a, b), m, "y")
            slot.T[pos:pos + m] = T
            if slot.sw.size:
                w = slot.sw[pos:pos + m]
                if self.swsrc is not None:
                    np.copyto(w, self.swsrc.read(a, b), casting="unsafe")
                else:
                    w[...] = 1
                if self.per_class is not None:
                    w *= self.per_class[_label_column(self.view, T)[0]].astype(w.dtype)
            pos += m
        slot.rows = pos - self.carry
        return slot


# ------------------------------------------------------------------ fit: the loop
class StreamLoop(_Loop):
    """The trainer's ``_Loop`` over a stream: the same compiled slices,
    progress, Ctrl-C and divergence handling, one window at a time."""

    def __init__(self, model, feed, batch_size):
        self.feed = feed
        slot = feed.slots[0]
        super().__init__(model, slot.X, slot.T, slot.sw, batch_size, n=feed.n)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastnn-reader")
        st = _opt_state(model)
        self._live = (model._params, model._state, st["s1"], st["s2"], st["t"])
        self._saved = [a.copy() for a in self._live]
        self._window = None          # (order, batches before it) for a replay

    def plan(self, shuffle):
        return self.feed.plan(self.model._shuffle_rng, shuffle), shuffle

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def epoch(self, plan, lr, progress, interrupt):
        """Run the epoch window by window (see ``_Loop.epoch`` for the result);
        the next window is read while this one trains."""
        windows, shuffle = plan
        m, bs, feed = self.model, self.batch_size, self.feed
        rng = m._shuffle_rng
        hp = m.optimizer._hyper(lr)
        self._t_epoch = int(self.state["t"][0])
        losses = np.zeros(self.n_batches)
        corrects = np.zeros(self.n_batches)
        self._losses.append(losses)
        done = 0
        carry = None
        pending = self.pool.submit(feed.fill, feed.slots[0], windows[0])
        for i in range(len(windows)):
            slot = pending.result()
            r = 0
            if carry is not None:          # last window's leftover rows open this one
                prev, rows = carry
                r = rows.shape[0]
                slot.X[bs - r:bs] = prev.X[rows]
                slot.T[bs - r:bs] = prev.T[rows]
                if slot.sw.size:
                    slot.sw[bs - r:bs] = prev.sw[rows]
            if i + 1 < len(windows):
                pending = self.pool.submit(feed.fill, feed.slots[(i + 1) % 2], windows[i + 1])
            total = r + slot.rows
            order = np.empty(total, np.int64)
            order[:r] = np.arange(bs - r, bs)
            order[r:] = bs + (rng.permutation(slot.rows) if shuffle else np.arange(slot.rows))
            last = i + 1 == len(windows)
            stop = total if last else total - total % bs
            self._begin_window(slot, order, done)
            done, end = self._slices(order, stop, hp, losses, corrects, done, progress,
                                     interrupt)
            if end is not None:
                return done, losses, corrects, end == "diverged"
            if not last and not np.isfinite(m._params).all():
                # a finite loss whose update left non-finite weights: seen here,
                # while this window can still be replayed
                losses[done] = np.nan
                self._losses[-1] = losses[:done + 1]
                return done, losses, corrects, True
            carry = (slot, order[stop:].copy())
        return done, losses, corrects, False

    def _begin_window(self, slot, order, done):
        self.X, self.T, self.sw = slot.X, slot.T, slot.sw
        for saved, live in zip(self._saved, self._live):
            saved[...] = live
        self._window = (order, done)

    def _replay(self, order, lr, done):
        """Restore the current window's starting snapshot and re-apply its
        batches up to ``done`` (counted from the epoch's start)."""
        m = self.model
        for saved, live in zip(self._saved, self._live):
            live[...] = saved
        worder, base = self._window
        k = done - base
        if k > 0:
            self._call(worder, 0, min(worder.shape[0], k * self.batch_size),
                       m.optimizer._hyper(lr), np.zeros(k), np.zeros(k), 0)


# ------------------------------------------------------------------ inference
def _chunk_rows(model, d, budget, extra_row_bytes=0):
    """Rows per inference chunk: a multiple of the predict block (so each row
    is computed exactly as in memory), two input chunks, the outputs and the
    caller's ``extra_row_bytes`` within the budget."""
    row_bytes = model.dtype.itemsize * (2 * d + 4 * model.n_outputs) + 16 + extra_row_bytes
    return max(1, int(budget // row_bytes) // PREDICT_BLOCK) * PREDICT_BLOCK


def _source_for(model, X):
    if not model._built or not model._compiled:
        raise ValueError("the model must be compiled and fitted (or built with "
                         "input_dim) before predict/evaluate")
    src = data.feature_source(X, "X")
    if src.shape[1] != model.input_dim:
        raise ValueError(f"X has {src.shape[1]} features but the model expects "
                         f"{model.input_dim}")
    return src


def outputs(model, src, memory_budget=None, extra_row_bytes=0):
    """Yield (start, stop, Z) over the rows of feature source ``src``: Z the
    last layer's raw outputs (rows, k) of that chunk, computed with the same
    compiled calls (block size, BLAS choice, block boundaries) as
    ``model._raw_outputs``, on as many threads as it would use for a chunk.
    The next chunk is read and converted in a background thread meanwhile;
    Z is reused from chunk to chunk. ``extra_row_bytes``: what the caller
    holds per row of a chunk, counted in the budget too."""
    n, d = src.shape
    budget = data.check_memory_budget(memory_budget)
    block = min(PREDICT_BLOCK, max(n, 1))
    chunk = min(n, _chunk_rows(model, d, budget, extra_row_bytes))
    use_blas = model._blas_layers(block)
    threads = inference_threads(-(-chunk // block))
    spaces = [model._workspace(block) + (np.empty_like(model._state),) for _ in range(threads)]
    bufs = [np.empty((chunk, d), model.dtype) for _ in range(2)]
    Z = np.empty((chunk, model.n_outputs), model.dtype)
    ranges = src.blocks(chunk)

    def run(t, Xc, Zc, start, stop):
        acts, work, bnbuf = spaces[t]
        predict_rows(Xc[start:stop], model._spec, model._fspec, use_blas, model._params,
                     model._state, bnbuf, acts, work, block, Zc[start:stop])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastnn-reader") as reader, \
            ThreadPoolExecutor(max_workers=threads) as workers, \
            single_threaded_blas(use_blas.any()):
        pending = reader.submit(data.read_features, src, *ranges[0], bufs[0][:ranges[0][1]])
        for i, (a, b) in enumerate(ranges):
            Xc = pending.result()
            if i + 1 < len(ranges):
                a2, b2 = ranges[i + 1]
                pending = reader.submit(data.read_features, src, a2, b2,
                                        bufs[(i + 1) % 2][:b2 - a2])
            m = b - a
            Zc = Z[:m]
            if threads <= 1:
                run(0, Xc, Zc, 0, m)
            else:
                blocks = -(-m // block)
                step = -(-blocks // threads) * block
                runs = [workers.submit(run, t, Xc, Zc, start, min(m, start + step))
                        for t, start in enumerate(range(0, m, step))]
                for f in runs:
                    f.result()
            yield a, b, Zc


def predict(model, X, how, memory_budget=None):
    """``model.predict`` (how="predict") or ``predict_proba`` (how="proba")
    over a streamed X, into one preallocated array of per-row results."""
    src = _source_for(model, X)
    if how == "proba" and not model.is_classifier:
        raise ValueError("predict_proba needs a classification loss")
    transform = model._proba_from_outputs if how == "proba" else model._predict_from_outputs
    out = None
    for a, b, Zc in outputs(model, src, memory_budget):
        res = transform(Zc)
        if out is None:
            out = np.empty((src.n_rows,) + res.shape[1:], res.dtype)
        out[a:b] = res
    return out


def evaluate_streamed(model, X, y, sample_weight=None, memory_budget=None):
    """``model.evaluate`` over a streamed X (y and sample_weight in memory or
    streamed alike)."""
    src = _source_for(model, X)
    n = src.n_rows
    ysrc = data.target_source(y, n, "y")
    swsrc = data.weight_source(sample_weight, n)
    return evaluate(model, src, ysrc, swsrc, memory_budget)


def evaluate(model, src, ysrc, swsrc, memory_budget=None):
    """{"loss" (l2 term included), "accuracy" (classification)} over row
    sources: each chunk's weighted mean loss, combined by weight."""
    total = weight = correct = 0.0
    # per row: the labels read and encoded, the loss kernel's copies and scratch
    held = model.dtype.itemsize * (4 * model.n_outputs + 9) + 32
    for a, b, Zc in outputs(model, src, memory_budget, held):
        T, _, _ = model._encode_targets(ysrc.read(a, b), b - a, fitting=False)
        sw = (np.zeros(0, model.dtype) if swsrc is None
              else data.weights_block(swsrc.read(a, b), model.dtype, swsrc.argument))
        wsum = float(sw.sum(dtype=np.float64)) if sw.size else float(b - a)
        loss, right = model._loss_of_outputs(Zc, T, sw if wsum > 0 else sw[:0])
        if wsum > 0:
            total += loss * wsum
        correct += right
        weight += wsum
    if not weight > 0:
        raise ValueError(f"{swsrc.argument} must not be all zero")
    out = {"loss": total / weight + model._l2_term()}
    if model.is_classifier:
        out["accuracy"] = correct / src.n_rows
    return out
