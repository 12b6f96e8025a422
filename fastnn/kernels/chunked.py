"""Minibatch training with each batch split into row chunks computed in parallel.

The split is fixed by the batch (``n_chunks`` and the row count), never by the
number of threads, so the arithmetic, and every bit of the result, is the same
on one thread or many:

1. chunk pass (one task per chunk): gather the chunk's rows, forward, the
   chunk's share of the loss and its output gradient (scaled by the whole
   batch's weight total), backward into the chunk's own gradient buffer;
2. update pass (one task per fixed block of parameters): sum the chunks'
   gradients in chunk order and apply the optimizer (L2 included). The
   update is elementwise, so splitting it into blocks changes nothing. The
   loss (L2 term included) is checked before it: a non-finite one stops the
   loop with that batch's update not applied, as in ``train_batches``.

Three ways to run the passes give identical results; the caller picks one:

* ``train_workers``: one parallel region for the whole call, one worker per
  thread, each taking its share of every batch's chunks and update blocks
  and meeting the others at a spin barrier after each pass (``sync.py``);
* ``train_chunked`` with ``parallel``: each pass under ``prange``, a
  fork-join per pass (about 3 us each here), used where the workers cannot
  all run at once (their check-in fails; ``sync.check_in``);
* ``train_chunked`` without: plain loops, where Numba's thread pool must not
  be used (one thread, a forked child, another Python thread already in a
  parallel call).

Measured, whole scikit-learn-style fits on 2 threads, 20 rounds interleaved
in one process, median of the paired ratios fork-join / workers: digits
(64-100-10, batch 200: 7 batches an epoch) 1.095, tabular (50-64-64-1,
batch 200) 1.061. BLAS inside the chunks must run on one thread (the caller
pins it), so no two thread pools run at once.

Where a small batch's time goes (tabular 50-64-64-1, batch 200 in two
100-row chunks, one core's chunk alone 47 us at about 93 GFLOP/s): the chunk
pass with both chunks at once 52 us, the update pass after it about 9 us
more (2.3 us of Adam arithmetic serially; the rest is each core reading the
half of the gradients and parameters the other one wrote). Two alternatives
were measured and dropped: the update on one thread after the chunk pass
(digits' whole fit 5% slower), and no update pass at all, each chunk instead
applying the previous batch's update to its own copy of the parameters and
optimizer state at the start of the chunk pass (same bits; at most 2 us a
batch faster, 0-3%, for a second copy of everything).

A wide first layer (stored transposed) is split by output columns instead,
the later layers by rows as here: see ``colsplit.py``, which shares this
module's batch plan (``batch_plan``) and update (``update_range``).

BatchNorm needs whole-batch statistics: networks with it train through
``network.train_batches``. Dropout masks are indexed by the row's place in
the whole batch, so a chunked batch draws the mask the whole batch would.

Workspaces are 2-D, one row per chunk, each a ``network.train_batches``
workspace for ``chunk_rows`` rows: acts2, work2, d02, d12, tb2, wb2 and
grads2 (n_chunks, n_params); ``closs``/``ccorr`` (n_chunks,) hold each
chunk's loss share and correct count.
"""

import numba
import numpy as np

from .config import kernel, parallel_kernel
from .losses import loss_grad_part
from .network import (
    TRAINING,
    batch_rows,
    batch_weight,
    gather_batch,
    network_backward,
    network_forward,
    reported_loss,
)
from .optimizers import batch_l2, optimizer_update
from .reduce import ZERO, u64
from .sync import barrier, check_in

# parameters per task of the update pass
UPDATE_BLOCK = 4096


@kernel
def part_bounds(c, n_parts, n):
    """Part c of n_parts of range(n): (start, length)."""
    a = (c * n) // n_parts
    return a, ((c + 1) * n) // n_parts - a


@kernel
def batch_chunks(n_chunks, chunk_rows, rows):
    """Chunks a batch of ``rows`` rows takes: the plan's ``n_chunks``, fewer
    for a smaller last batch (at least 32 rows each, never more than the
    ``chunk_rows`` a workspace holds)."""
    return min(n_chunks, max(-(-rows // chunk_rows), rows // 32))


@kernel
def batch_plan(b0, stop, batch_size, epoch_rows, n_chunks, chunk_rows, sw, order):
    """The batch that starts at b0: its rows (``batch_rows``), the chunks it
    takes (``batch_chunks``) and its weight total (``batch_weight``)."""
    rows = batch_rows(b0, stop, batch_size, epoch_rows)
    return rows, batch_chunks(n_chunks, chunk_rows, rows), batch_weight(sw, order, b0, rows)


@kernel
def chunk_sums(n_chunks, closs, ccorr):
    """The batch's data loss and correct count: the chunks' shares summed in
    chunk order."""
    loss = 0.0
    correct = 0.0
    for c in range(n_chunks):
        loss += closs[c]
        correct += ccorr[c]
    return loss, correct


@kernel
def chunks_total(n_chunks, closs, ccorr, spec, params, l2, wsum, l2_per_row):
    """``chunk_sums`` and the batch's L2 step factor and loss term (``batch_l2``)."""
    loss, correct = chunk_sums(n_chunks, closs, ccorr)
    l2_step, l2_loss = batch_l2(spec, params, l2, wsum, l2_per_row)
    return loss, correct, l2_step, l2_loss


@kernel
def chunk_step(c, n_chunks, X, T, sw, order, b0, rows, spec, fspec, use_blas, params,
               state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
               wsum, seed, step, closs, ccorr):
    """Chunk c of the batch order[b0:b0+rows]: forward, loss share, backward
    into grads2[c]; its loss share and correct count into closs[c], ccorr[c]."""
    r0, cr = part_bounds(c, n_chunks, rows)
    acts = acts2[c]
    tbuf = tb2[c]
    wbuf = wb2[c]
    gather_batch(spec, use_blas, X, T, sw, order, b0 + r0, cr, acts, tbuf, wbuf)
    weighted = sw.shape[0] > 0
    work = work2[c]
    out_off = network_forward(spec, fspec, params, state, bnbuf, acts, work, cr,
                              TRAINING, use_blas, seed, step, r0, rows)
    loss, correct = loss_grad_part(acts, out_off, tbuf, ZERO, wbuf, weighted, T.shape[1],
                                   cr, loss_code, d02[c], ZERO, wsum)
    network_backward(spec, fspec, params, grads2[c], bnbuf, acts, work, cr, use_blas,
                     d02[c], d12[c])
    closs[c] = loss
    ccorr[c] = correct


@kernel
def update_block(blk, n_chunks, grads2, params, wmask, l2, opt_code, hp, s1, s2, step):
    """Block blk of the parameters: see ``update_range``."""
    p0 = blk * UPDATE_BLOCK
    update_range(p0, min(params.shape[0], p0 + UPDATE_BLOCK), n_chunks, grads2, params,
                 wmask, l2, opt_code, hp, s1, s2, step)


@kernel
def update_range(p0, p1, n_chunks, grads2, params, wmask, l2, opt_code, hp, s1, s2, step):
    """Parameters p0 .. p1-1: the optimizer's update with L2 from the sum of
    the chunks' gradients, in chunk order (grads2[0] gets all but the last
    one's, which the update adds as it reads)."""
    G = grads2[0]
    for c in range(1, n_chunks - 1):
        Gc = grads2[c]
        for p in range(p0, p1):
            G[u64(p)] += Gc[u64(p)]
    # the last chunk's gradient is added in the update's own pass (same order)
    last = grads2[n_chunks - 1][p0:p1] if n_chunks > 1 else G[p0:p0]
    S2 = s2[p0:p1] if s2.shape[0] > 0 else s2
    optimizer_update(opt_code, params[p0:p1], G[p0:p1], last, s1[p0:p1], S2, wmask[p0:p1],
                     hp, step, l2)


@parallel_kernel
def chunks_parallel(n_chunks, X, T, sw, order, b0, rows, spec, fspec, use_blas, params,
                    state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
                    wsum, seed, step, closs, ccorr):
    for c in numba.prange(n_chunks):
        # prange counts in uint64, range in int64: one type, one specialisation
        chunk_step(np.int64(c), n_chunks, X, T, sw, order, b0, rows, spec, fspec, use_blas,
                   params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
                   wsum, seed, step, closs, ccorr)
    return 0


@parallel_kernel
def updates_parallel(n_blocks, n_chunks, grads2, params, wmask, l2, opt_code, hp, s1, s2,
                     step):
    for blk in numba.prange(n_blocks):
        update_block(np.int64(blk), n_chunks, grads2, params, wmask, l2, opt_code, hp, s1,
                     s2, step)
    return 0


@kernel
def train_chunked(X, T, sw, order, start, stop, batch_size, epoch_rows, n_chunks,
                  chunk_rows, parallel, spec, fspec, use_blas, params, state, bnbuf,
                  acts2, work2, d02, d12, tb2, wb2, grads2, closs, ccorr,
                  wmask, l2, l2_per_row, loss_code,
                  opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at,
                  loss_scale):
    """``network.train_batches`` (same meaning of the shared arguments, epochs
    of ``epoch_rows`` included, and of the result) with each batch of ``rows``
    rows split into ``n_chunks`` chunks, a smaller last batch into fewer
    (chunks of at least 32 rows, and never more than the ``chunk_rows`` the
    workspace holds); ``parallel`` runs the passes under prange, else as plain
    loops (same results)."""
    n_blocks = -(-params.shape[0] // UPDATE_BLOCK)
    done = 0
    b0 = start
    while b0 < stop:
        rows, nc, wsum = batch_plan(b0, stop, batch_size, epoch_rows, n_chunks, chunk_rows,
                                    sw, order)
        step = tstep[0] + 1
        if parallel:
            chunks_parallel(nc, X, T, sw, order, b0, rows, spec, fspec, use_blas, params,
                            state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2,
                            loss_code, wsum, seed, step, closs, ccorr)
        else:
            for c in range(nc):
                chunk_step(c, nc, X, T, sw, order, b0, rows, spec, fspec, use_blas, params,
                           state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2,
                           loss_code, wsum, seed, step, closs, ccorr)
        data_loss, correct, l2_step, l2_loss = chunks_total(nc, closs, ccorr, spec, params, l2,
                                                            wsum, l2_per_row)
        loss = data_loss + l2_loss
        if not np.isfinite(loss):
            losses[u64(loss_at + done)] = loss
            return done
        if parallel and n_blocks > 1:
            updates_parallel(n_blocks, nc, grads2, params, wmask, l2_step, opt_code,
                             hp, s1, s2, step)
        else:
            for blk in range(n_blocks):
                update_block(blk, nc, grads2, params, wmask, l2_step, opt_code, hp, s1,
                             s2, step)
        tstep[0] = step
        losses[u64(loss_at + done)] = reported_loss(data_loss, l2_loss, loss_scale)
        corrects[u64(loss_at + done)] = correct
        done += 1
        b0 += rows
    return done


# sync slots (a cache line apart): arrival at the region, then the barriers
CHECK_IN = np.int64(0)
BARRIERS = np.int64(8)


@kernel
def workers_loss(w, nc, closs, ccorr, l2_loss, losses, at):
    """After the chunk pass's barrier: the batch's (data loss, correct count,
    whether its loss is finite), the same in every worker; worker 0 records
    a non-finite loss at losses[at]."""
    data_loss, correct = chunk_sums(nc, closs, ccorr)
    loss = data_loss + l2_loss
    finite = np.isfinite(loss)
    if w == 0 and not finite:
        losses[u64(at)] = loss
    return data_loss, correct, finite


@kernel
def workers_record(w, tstep, step, losses, corrects, at, data_loss, l2_loss, correct,
                   loss_scale):
    """After the update's barrier, worker 0 records the batch (as
    ``train_chunked`` does)."""
    if w == 0:
        tstep[0] = step
        losses[u64(at)] = reported_loss(data_loss, l2_loss, loss_scale)
        corrects[u64(at)] = correct


@kernel
def worker_batches(w, n_workers, sync, done_by, max_spins, X, T, sw, order, start, stop,
                   batch_size, epoch_rows, n_chunks, chunk_rows, spec, fspec, use_blas,
                   params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, closs,
                   ccorr, wmask, l2, l2_per_row, loss_code, opt_code, hp, s1, s2, tstep,
                   seed, losses, corrects, loss_at, loss_scale):
    """Worker w of ``train_workers``: every batch's chunks w, w + n_workers,
    ..., a barrier, its share of the update blocks, a barrier. Every worker
    computes the batch's loss from the chunks' shares (the same sums in the
    same order), so all stop at the same non-finite batch; worker 0 records.
    Sets done_by[w] to the batches trained, or -1 when the check-in failed."""
    if not check_in(sync, CHECK_IN, n_workers, max_spins):
        done_by[w] = -1
        return
    n_blocks = -(-params.shape[0] // UPDATE_BLOCK)
    t0 = tstep[0]
    met = 0
    done = 0
    b0 = start
    while b0 < stop:
        rows, nc, wsum = batch_plan(b0, stop, batch_size, epoch_rows, n_chunks, chunk_rows,
                                    sw, order)
        step = t0 + done + 1
        for c in range(w, nc, n_workers):
            chunk_step(c, nc, X, T, sw, order, b0, rows, spec, fspec, use_blas, params,
                       state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
                       wsum, seed, step, closs, ccorr)
        # the L2 term reads every parameter: before the barrier, after which
        # the update blocks change them
        l2_step, l2_loss = batch_l2(spec, params, l2, wsum, l2_per_row)
        met += 1
        barrier(sync, BARRIERS, met * n_workers)
        data_loss, correct, finite = workers_loss(w, nc, closs, ccorr, l2_loss, losses,
                                                  loss_at + done)
        if not finite:
            break
        for blk in range(w, n_blocks, n_workers):
            update_block(blk, nc, grads2, params, wmask, l2_step, opt_code, hp, s1, s2, step)
        met += 1
        barrier(sync, BARRIERS, met * n_workers)
        workers_record(w, tstep, step, losses, corrects, loss_at + done, data_loss, l2_loss,
                       correct, loss_scale)
        done += 1
        b0 += rows
    done_by[w] = done


@parallel_kernel
def train_workers(n_workers, max_spins, X, T, sw, order, start, stop, batch_size, epoch_rows,
                  n_chunks, chunk_rows, spec, fspec, use_blas, params, state, bnbuf,
                  acts2, work2, d02, d12, tb2, wb2, grads2, closs, ccorr,
                  wmask, l2, l2_per_row, loss_code,
                  opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at,
                  loss_scale):
    """``train_chunked`` with its passes run by ``n_workers`` workers (Numba's
    thread count: one prange iteration per thread) that stay in one parallel
    region for the whole call and meet at barriers (``sync.py``); the same
    chunks and update blocks, so the same bits. Returns the batches trained,
    or -1, with nothing changed, when the workers could not all run at once
    (``sync.check_in``, ``max_spins``): then use ``train_chunked``."""
    sync = np.zeros(16, np.int64)
    done_by = np.zeros(n_workers, np.int64)
    for w in numba.prange(n_workers):
        worker_batches(np.int64(w), n_workers, sync, done_by, max_spins, X, T, sw, order,
                       start, stop, batch_size, epoch_rows, n_chunks, chunk_rows, spec, fspec,
                       use_blas, params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2,
                       grads2, closs, ccorr, wmask, l2, l2_per_row, loss_code, opt_code, hp,
                       s1, s2, tstep, seed, losses, corrects, loss_at, loss_scale)
    return done_by.min()
