"""Minibatch training with the first layer split by output columns and the
rest of the network by row chunks.

For a wide first layer (MNIST-shaped 784 x 256: 86% of W2's multiply-adds and
its weights) the row chunks of ``chunked.py`` leave each core a full-size dW
(784 x 256) that the update pass must read back from both cores and add.
Here each of ``n_parts`` tasks owns a fixed run of the first layer's output
columns (rows of the transposed W, which is contiguous) for the whole batch,
so its dW is computed once, over every row, and updated where it was made.
Per batch, three passes (the same bits however they are run, see below, and
the split is fixed by the model and batch size, never by the thread count):

1. first-layer pass (task c: columns j0..j1): Z = X W[:, j0:j1] + b for the
   whole batch (gemm, X row-major), copied into each row chunk's workspace,
   activation applied there;
2. chunk pass (task r: row chunk r): its targets and weights, layers 1.. n-1
   forward, the loss share and output gradient, backward down to the first
   layer's activation: dZ for the chunk's rows and every column;
3. update pass (task c): its columns of dZ for all rows gathered from the
   chunks, dW and db of its columns (gemm over every row), the optimizer on
   them; its share of the later layers' parameters (the chunks' gradients
   summed in chunk order, as ``chunked.update_range``); and its share of the
   next batch's rows of X, gathered into the other of two input buffers.

The passes are run by workers in one parallel region, meeting at
barriers (``train_colsplit_workers``, as ``chunked.train_workers``; W2's
epoch 1.026x faster than a fork-join per pass, paired median of 10 epochs),
else each under ``prange`` or a plain loop (``train_colsplit``).

The loss (L2 included) is checked between passes 2 and 3: a non-finite one
stops the loop with that batch's update not applied, as in
``network.train_batches``. Used when the first layer is Dense, stored
transposed (BLAS), not the last layer, and no BatchNorm (``model._col_parts``).

Workspaces: those of ``chunked.train_chunked`` (the input slot of ``acts2``
unused), plus ``xb2`` (2, batch_size * n_in) for X row-major, and ``zfull``,
``dfull`` (n_out0 * batch_size) for the first layer's Z and dZ, feature-major
over the whole batch.
"""

import numba
import numpy as np

from .activations import activation_backward, activation_forward
from .chunked import (
    BARRIERS,
    CHECK_IN,
    batch_plan,
    chunks_total,
    part_bounds,
    update_range,
    workers_loss,
    workers_record,
)
from .codes import K_A, K_ACT, K_B, K_IN, K_OUT, K_W, K_Z
from .config import kernel, parallel_kernel
from .dense import dense_backward, dense_forward
from .losses import loss_grad_part
from .network import (
    TRAINING,
    backward_to,
    batch_rows,
    dz_in_d0,
    forward_from,
    gather_rows_rowmajor,
    gather_targets,
    reported_loss,
)
from .optimizers import batch_l2
from .reduce import ZERO, u64
from .sync import barrier, check_in

ONE = np.int64(1)
BLAS = np.bool_(True)
NO_DX = np.bool_(False)


@kernel
def first_forward(c, n_parts, n_chunks, rows, spec, params, xb, zfull, acts2, work2):
    """Pass 1, task c: the first layer's columns j0..j1 over the whole batch
    (X row-major in xb), into each row chunk's workspace."""
    n_in = spec[0, K_IN]
    j0, w = part_bounds(c, n_parts, spec[0, K_OUT])
    bo = spec[0, K_B]
    dense_forward(xb, ZERO, n_in, params, spec[0, K_W] + j0 * n_in, bo + j0 if bo >= 0 else bo,
                  w, rows, BLAS, zfull, j0 * rows, BLAS, BLAS)
    zo = spec[0, K_Z]
    ao = spec[0, K_A]
    for r in range(n_chunks):
        r0, cr = part_bounds(r, n_chunks, rows)
        work = work2[r]
        dst0 = zo * cr + j0 * cr
        for j in range(w):
            src = (j0 + j) * rows + r0
            dst = dst0 + j * cr
            for i in range(cr):
                work[u64(dst + i)] = zfull[u64(src + i)]
        a0 = ao * cr + j0 * cr
        activation_forward(work[dst0:dst0 + w * cr], acts2[r][a0:a0 + w * cr], spec[0, K_ACT])


@kernel
def upper_chunk(r, n_chunks, T, sw, order, b0, rows, spec, fspec, use_blas, params, state,
                bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code, wsum, seed,
                step, closs, ccorr):
    """Pass 2, task r: row chunk r from the first layer's output to dZ of the
    first layer (in d02[r] or d12[r], see ``network.dz_in_d0``); its loss
    share and correct count into closs[r], ccorr[r]."""
    r0, cr = part_bounds(r, n_chunks, rows)
    tbuf = tb2[r]
    wbuf = wb2[r]
    gather_targets(T, sw, order, b0 + r0, cr, tbuf, wbuf)
    acts = acts2[r]
    work = work2[r]
    out_off = forward_from(ONE, spec, fspec, params, state, bnbuf, acts, work, cr, TRAINING,
                           use_blas, seed, step, r0, rows)
    loss, correct = loss_grad_part(acts, out_off, tbuf, ZERO, wbuf, sw.shape[0] > 0,
                                   T.shape[1], cr, loss_code, d02[r], ZERO, wsum)
    backward_to(ONE, spec, fspec, params, grads2[r], bnbuf, acts, work, cr, use_blas, d02[r],
                d12[r])
    D = d02[r] if dz_in_d0(spec, ONE) else d12[r]
    size = spec[0, K_OUT] * cr
    zo = spec[0, K_Z] * cr
    ao = spec[0, K_A] * cr
    activation_backward(work[zo:zo + size], acts[ao:ao + size], D[0:size], spec[0, K_ACT])
    closs[r] = loss
    ccorr[r] = correct


@kernel
def first_update(c, n_parts, n_chunks, rows, spec, params, grads2, dz2, dfull, xb, p_rest,
                 wmask, l2, opt_code, hp, s1, s2, step, X, order, nb0, nrows, xnext):
    """Pass 3, task c: dW, db of the first layer's columns j0..j1 over the
    whole batch and their update; part c of the later layers' parameters
    (p_rest on) updated from the chunks' gradients; part c of the next
    batch's rows (nrows rows from order[nb0:]) gathered into xnext."""
    n_in = spec[0, K_IN]
    j0, w = part_bounds(c, n_parts, spec[0, K_OUT])
    for r in range(n_chunks):
        r0, cr = part_bounds(r, n_chunks, rows)
        D = dz2[r]
        for j in range(w):
            src = (j0 + j) * cr
            dst = (j0 + j) * rows + r0
            for i in range(cr):
                dfull[u64(dst + i)] = D[u64(src + i)]
    G = grads2[0]
    wo = spec[0, K_W] + j0 * n_in
    bo = spec[0, K_B]
    bc = bo + j0 if bo >= 0 else bo
    dense_backward(xb, ZERO, n_in, params, wo, bc, w, rows, BLAS, dfull, j0 * rows, G, NO_DX,
                   dfull, ZERO, BLAS, BLAS)
    update_range(wo, wo + w * n_in, ONE, grads2, params, wmask, l2, opt_code, hp, s1, s2, step)
    if bo >= 0:
        update_range(bc, bc + w, ONE, grads2, params, wmask, l2, opt_code, hp, s1, s2, step)
    q0, nq = part_bounds(c, n_parts, params.shape[0] - p_rest)
    update_range(p_rest + q0, p_rest + q0 + nq, n_chunks, grads2, params, wmask, l2,
                 opt_code, hp, s1, s2, step)
    i0, ni = part_bounds(c, n_parts, nrows)
    gather_rows_rowmajor(X, order, nb0 + i0, ni, xnext[i0 * n_in:])


@parallel_kernel
def firsts_parallel(n_parts, n_chunks, rows, spec, params, xb, zfull, acts2, work2):
    for c in numba.prange(n_parts):
        first_forward(np.int64(c), n_parts, n_chunks, rows, spec, params, xb, zfull, acts2,
                      work2)
    return 0


@parallel_kernel
def uppers_parallel(n_chunks, T, sw, order, b0, rows, spec, fspec, use_blas, params, state,
                    bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code, wsum, seed,
                    step, closs, ccorr):
    for r in numba.prange(n_chunks):
        upper_chunk(np.int64(r), n_chunks, T, sw, order, b0, rows, spec, fspec, use_blas,
                    params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
                    wsum, seed, step, closs, ccorr)
    return 0


@parallel_kernel
def first_updates_parallel(n_parts, n_chunks, rows, spec, params, grads2, dz2, dfull, xb,
                           p_rest, wmask, l2, opt_code, hp, s1, s2, step, X, order, nb0,
                           nrows, xnext):
    for c in numba.prange(n_parts):
        first_update(np.int64(c), n_parts, n_chunks, rows, spec, params, grads2, dz2, dfull,
                     xb, p_rest, wmask, l2, opt_code, hp, s1, s2, step, X, order, nb0, nrows,
                     xnext)
    return 0


@kernel
def train_colsplit(X, T, sw, order, start, stop, batch_size, epoch_rows, n_chunks,
                   chunk_rows, n_parts, parallel, spec, fspec, use_blas, params, state,
                   bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, closs, ccorr, xb2,
                   zfull, dfull, p_rest, wmask, l2, l2_per_row, loss_code,
                   opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at,
                   loss_scale):
    """``chunked.train_chunked`` (same arguments, meaning and result) with
    the first layer split into ``n_parts`` runs of columns (see the module
    docstring); ``p_rest``: where the later layers' parameters start."""
    dz2 = d02 if dz_in_d0(spec, ONE) else d12
    cur = 0
    rows = batch_rows(start, stop, batch_size, epoch_rows)
    gather_rows_rowmajor(X, order, start, rows, xb2[0])
    done = 0
    b0 = start
    while b0 < stop:
        rows, nc, wsum = batch_plan(b0, stop, batch_size, epoch_rows, n_chunks, chunk_rows,
                                    sw, order)
        nb0 = b0 + rows
        nrows = batch_rows(nb0, stop, batch_size, epoch_rows)
        step = tstep[0] + 1
        xb = xb2[cur]
        xnext = xb2[1 - cur]
        if parallel:
            firsts_parallel(n_parts, nc, rows, spec, params, xb, zfull, acts2, work2)
            uppers_parallel(nc, T, sw, order, b0, rows, spec, fspec, use_blas, params, state,
                            bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code, wsum,
                            seed, step, closs, ccorr)
        else:
            for c in range(n_parts):
                first_forward(c, n_parts, nc, rows, spec, params, xb, zfull, acts2, work2)
            for r in range(nc):
                upper_chunk(r, nc, T, sw, order, b0, rows, spec, fspec, use_blas, params,
                            state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
                            wsum, seed, step, closs, ccorr)
        data_loss, correct, l2_step, l2_loss = chunks_total(nc, closs, ccorr, spec, params, l2,
                                                            wsum, l2_per_row)
        loss = data_loss + l2_loss
        if not np.isfinite(loss):
            losses[u64(loss_at + done)] = loss
            return done
        if parallel:
            first_updates_parallel(n_parts, nc, rows, spec, params, grads2, dz2, dfull, xb,
                                   p_rest, wmask, l2_step, opt_code, hp, s1, s2, step, X,
                                   order, nb0, nrows, xnext)
        else:
            for c in range(n_parts):
                first_update(c, n_parts, nc, rows, spec, params, grads2, dz2, dfull, xb,
                             p_rest, wmask, l2_step, opt_code, hp, s1, s2, step, X, order,
                             nb0, nrows, xnext)
        cur = 1 - cur
        tstep[0] = step
        losses[u64(loss_at + done)] = reported_loss(data_loss, l2_loss, loss_scale)
        corrects[u64(loss_at + done)] = correct
        done += 1
        b0 = nb0
    return done


@kernel
def worker_colsplit(w, n_workers, sync, done_by, max_spins, X, T, sw, order, start, stop,
                    batch_size, epoch_rows, n_chunks, chunk_rows, n_parts, spec, fspec,
                    use_blas, params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2,
                    closs, ccorr, xb2, zfull, dfull, p_rest, wmask, l2, l2_per_row, loss_code,
                    opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at, loss_scale):
    """Worker w of ``train_colsplit_workers``: as ``chunked.worker_batches``,
    with the three passes of ``train_colsplit`` (column parts and row chunks
    w, w + n_workers, ...) and a barrier after each."""
    if not check_in(sync, CHECK_IN, n_workers, max_spins):
        done_by[w] = -1
        return
    dz2 = d02 if dz_in_d0(spec, ONE) else d12
    cur = 0
    if w == 0:
        gather_rows_rowmajor(X, order, start, batch_rows(start, stop, batch_size, epoch_rows),
                             xb2[0])
    met = 1
    barrier(sync, BARRIERS, met * n_workers)
    t0 = tstep[0]
    done = 0
    b0 = start
    while b0 < stop:
        rows, nc, wsum = batch_plan(b0, stop, batch_size, epoch_rows, n_chunks, chunk_rows,
                                    sw, order)
        nb0 = b0 + rows
        nrows = batch_rows(nb0, stop, batch_size, epoch_rows)
        step = t0 + done + 1
        xb = xb2[cur]
        for c in range(w, n_parts, n_workers):
            first_forward(c, n_parts, nc, rows, spec, params, xb, zfull, acts2, work2)
        met += 1
        barrier(sync, BARRIERS, met * n_workers)
        for r in range(w, nc, n_workers):
            upper_chunk(r, nc, T, sw, order, b0, rows, spec, fspec, use_blas, params, state,
                        bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code, wsum,
                        seed, step, closs, ccorr)
        l2_step, l2_loss = batch_l2(spec, params, l2, wsum, l2_per_row)
        met += 1
        barrier(sync, BARRIERS, met * n_workers)
        data_loss, correct, finite = workers_loss(w, nc, closs, ccorr, l2_loss, losses,
                                                  loss_at + done)
        if not finite:
            break
        for c in range(w, n_parts, n_workers):
            first_update(c, n_parts, nc, rows, spec, params, grads2, dz2, dfull, xb, p_rest,
                         wmask, l2_step, opt_code, hp, s1, s2, step, X, order, nb0, nrows,
                         xb2[1 - cur])
        met += 1
        barrier(sync, BARRIERS, met * n_workers)
        workers_record(w, tstep, step, losses, corrects, loss_at + done, data_loss, l2_loss,
                       correct, loss_scale)
        cur = 1 - cur
        done += 1
        b0 = nb0
    done_by[w] = done


@parallel_kernel
def train_colsplit_workers(n_workers, max_spins, X, T, sw, order, start, stop, batch_size,
                           epoch_rows, n_chunks, chunk_rows, n_parts, spec, fspec, use_blas,
                           params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2,
                           closs, ccorr, xb2, zfull, dfull, p_rest, wmask, l2, l2_per_row,
                           loss_code, opt_code, hp, s1, s2, tstep, seed, losses, corrects,
                           loss_at, loss_scale):
    """``train_colsplit`` run by workers in one parallel region, as
    ``chunked.train_workers`` runs ``train_chunked``: same arguments (less
    ``parallel``), same bits; -1 when the workers could not all run at once."""
    sync = np.zeros(16, np.int64)
    done_by = np.zeros(n_workers, np.int64)
    for w in numba.prange(n_workers):
        worker_colsplit(np.int64(w), n_workers, sync, done_by, max_spins, X, T, sw, order,
                        start, stop, batch_size, epoch_rows, n_chunks, chunk_rows, n_parts,
                        spec, fspec, use_blas, params, state, bnbuf, acts2, work2, d02, d12,
                        tb2, wb2, grads2, closs, ccorr, xb2, zfull, dfull, p_rest, wmask, l2,
                        l2_per_row, loss_code, opt_code, hp, s1, s2, tstep, seed, losses,
                        corrects, loss_at, loss_scale)
    return done_by.min()
