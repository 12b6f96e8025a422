"""Whole-network kernels: forward, backward, and the minibatch training loop.

The network is described by two tables built once by the model (see
``codes.K_*`` / ``codes.F_*``): ``spec`` (layers, K_COLS) int64 and ``fspec``
(layers, F_COLS) float64. All buffers are flat, preallocated by the caller,
and feature-major: a width-w slot for ``rows`` rows at per-row offset o holds
feature j of row i at ``o*rows + j*rows + i`` (see dense.py).

* ``params``/``grads`` (n_params,): every layer's W, b, gamma, beta;
* ``state``: BatchNorm running mean and variance; ``bnbuf`` the same size, for
  the batch mean and 1/std kept for the backward pass;
* ``acts``: slot 0 holds the gathered input batch, then one slot per layer
  output, at per-row offset ``spec[l, K_A]``; when the first layer is a
  BLAS Dense layer the input slot is row-major instead (a plain row copy,
  no transpose: gemm reads the transpose for free), see ``input_rows``;
* ``work``: per layer, pre-activations (Dense), normalised inputs (BatchNorm)
  or the mask (Dropout), at per-row offset ``spec[l, K_Z]``;
* ``d0``/``d1``: two gradient buffers of max_rows * max_width, used in turn;
* ``tbuf`` targets (k, rows); ``wbuf`` row weights then loss scratch (8 * rows).

``train_batches`` runs many minibatches in one call: it gathers each batch by
row index (transposing to feature-major), runs forward, the fused loss,
backward and one optimizer update, and records the batch loss. Nothing is
allocated in it.
"""

import numpy as np

from .activations import activation_backward, activation_forward
from .codes import (
    BATCHNORM,
    DENSE,
    DROPOUT,
    F_EPS,
    F_MOMENTUM,
    F_RATE,
    K_A,
    K_ACT,
    K_B,
    K_IN,
    K_KIND,
    K_OUT,
    K_S,
    K_W,
    K_WT,
    K_Z,
)
from .config import kernel
from .dense import dense_backward, dense_forward
from .losses import loss_grad
from .norm import batchnorm_backward, batchnorm_forward, dropout_apply, dropout_mask
from .optimizers import batch_l2, optimizer_update
from .reduce import ZERO, u64

# Arguments handed from one kernel to another are typed, never literal
# (``0`` or ``True`` would compile a separate specialisation per value).
TRAINING = np.bool_(True)
INFERENCE = np.bool_(False)


@kernel
def input_rows(spec, use_blas):
    """Whether the input slot is row-major: the first layer is BLAS Dense."""
    return spec[0, K_KIND] == DENSE and use_blas[0] != 0


@kernel
def network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                    training, use_blas, seed, step, row0, total):
    """Forward pass over the batch already in acts slot 0 (``rows`` rows).

    Returns the offset of the last layer's output in ``acts``. In training
    BatchNorm uses batch statistics (and updates running ones) and Dropout
    draws its mask from (seed, step, layer), the rows being rows row0 ..
    row0+rows-1 of a batch of ``total`` (a chunk of it, or all: 0, rows)."""
    return forward_from(ZERO, spec, fspec, params, state, bnbuf, acts, work, rows,
                        training, use_blas, seed, step, row0, total)


@kernel
def forward_from(first, spec, fspec, params, state, bnbuf, acts, work, rows,
                 training, use_blas, seed, step, row0, total):
    """``network_forward`` from layer ``first`` on, its input already in
    the output slot of layer first - 1 (``colsplit.py`` computes layer 0)."""
    n_layers = spec.shape[0]
    in_off = spec[first - 1, K_A] * rows if first > 0 else ZERO
    for l in range(first, n_layers):
        kind = spec[l, K_KIND]
        n_in = spec[l, K_IN]
        n_out = spec[l, K_OUT]
        a_off = spec[l, K_A] * rows
        z_off = spec[l, K_Z] * rows
        size = rows * n_out
        if kind == DENSE:
            dense_forward(acts, in_off, n_in, params, spec[l, K_W], spec[l, K_B], n_out,
                          rows, use_blas[l] != 0, work, z_off,
                          l == 0 and input_rows(spec, use_blas), spec[l, K_WT] != 0)
            activation_forward(work[z_off:z_off + size], acts[a_off:a_off + size],
                               spec[l, K_ACT])
        elif kind == BATCHNORM:
            batchnorm_forward(acts, in_off, n_out, rows, params, spec[l, K_W], spec[l, K_B],
                              training, fspec[l, F_MOMENTUM], fspec[l, F_EPS],
                              state, spec[l, K_S], bnbuf, work, z_off, acts, a_off)
        elif kind == DROPOUT:
            src = acts[in_off:in_off + size]
            dst = acts[a_off:a_off + size]
            if training and fspec[l, F_RATE] > 0.0:
                M = work[z_off:z_off + size]
                dropout_mask(M, fspec[l, F_RATE], seed, step, l, rows, row0, total)
                dropout_apply(src, M, dst)
            else:
                dst[:] = src
        in_off = a_off
    return in_off


@kernel
def network_backward(spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas,
                     d0, d1):
    """Backward pass; d0 holds dLoss/d(last output) on entry. Fills grads."""
    return backward_to(ZERO, spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas,
                       d0, d1)


@kernel
def backward_to(last, spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas,
                d0, d1):
    """``network_backward`` through layers n-1 .. ``last`` only: the
    gradient for the output of layer last - 1 ends in d0 or d1, as
    ``dz_in_d0`` says (``colsplit.py`` does layer 0 itself)."""
    n_layers = spec.shape[0]
    cur = d0
    nxt = d1
    zero = ZERO
    for l in range(n_layers - 1, last - 1, -1):
        kind = spec[l, K_KIND]
        n_in = spec[l, K_IN]
        n_out = spec[l, K_OUT]
        in_off = spec[l - 1, K_A] * rows if l > 0 else zero
        z_off = spec[l, K_Z] * rows
        a_off = spec[l, K_A] * rows
        size = rows * n_out
        need_dx = l > 0
        if kind == DENSE:
            activation_backward(work[z_off:z_off + size], acts[a_off:a_off + size],
                                cur[0:size], spec[l, K_ACT])
            dense_backward(acts, in_off, n_in, params, spec[l, K_W], spec[l, K_B], n_out,
                           rows, use_blas[l] != 0, cur, zero, grads, need_dx, nxt, zero,
                           l == 0 and input_rows(spec, use_blas), spec[l, K_WT] != 0)
        elif kind == BATCHNORM:
            batchnorm_backward(cur, zero, n_out, rows, work, z_off, params, spec[l, K_W],
                               bnbuf, spec[l, K_S], grads, spec[l, K_B], need_dx, nxt, zero)
        elif kind == DROPOUT:
            if not need_dx:
                pass
            elif fspec[l, F_RATE] > 0.0:
                dropout_apply(cur[0:size], work[z_off:z_off + size], nxt[0:size])
            else:
                nxt[0:size] = cur[0:size]
        tmp = cur
        cur = nxt
        nxt = tmp
    return 0


@kernel
def dz_in_d0(spec, last):
    """Whether ``backward_to(last, ...)`` leaves its result in d0 (else d1):
    the two buffers swap once per layer."""
    return (spec.shape[0] - last) % 2 == 0


@kernel
def batch_rows(b0, stop, batch_size, epoch_rows):
    """Rows of the batch that starts at b0 (0 at or past stop): a batch
    never spans two epochs of ``epoch_rows`` (see ``train_batches``)."""
    if b0 >= stop:
        return ZERO
    return min(batch_size, stop - b0, epoch_rows - b0 % epoch_rows)


@kernel
def gather_rows(X, order, b0, rows, out):
    """out (d, rows) feature-major = X[order[b0:b0+rows]].T for X (n, d)."""
    d = X.shape[1]
    for i in range(rows):
        r = order[u64(b0 + i)]
        for j in range(d):
            out[u64(j * rows + i)] = X[u64(r), j]


@kernel
def gather_rows_rowmajor(X, order, b0, rows, out):
    """out (rows, d) row-major = X[order[b0:b0+rows]] for X (n, d)."""
    d = X.shape[1]
    for i in range(rows):
        r = order[u64(b0 + i)]
        base = i * d
        for j in range(d):
            out[u64(base + j)] = X[u64(r), j]


@kernel
def gather_batch(spec, use_blas, X, T, sw, order, b0, rows, acts, tbuf, wbuf):
    """Rows order[b0:b0+rows] of X into the input slot of ``acts`` (in the
    layout the network reads, see ``input_rows``), of T into ``tbuf`` and,
    when ``sw`` is not empty, their weights into ``wbuf``."""
    if input_rows(spec, use_blas):
        gather_rows_rowmajor(X, order, b0, rows, acts)
    else:
        gather_rows(X, order, b0, rows, acts)
    gather_targets(T, sw, order, b0, rows, tbuf, wbuf)


@kernel
def gather_targets(T, sw, order, b0, rows, tbuf, wbuf):
    """Rows order[b0:b0+rows] of T into ``tbuf`` (feature-major) and, when
    ``sw`` is not empty, their weights into ``wbuf``."""
    gather_rows(T, order, b0, rows, tbuf)
    if sw.shape[0] > 0:
        for i in range(rows):
            wbuf[i] = sw[order[u64(b0 + i)]]


@kernel
def gather_block(X, b0, rows, out):
    """out (d, rows) feature-major = X[b0:b0+rows].T for X (n, d)."""
    d = X.shape[1]
    for i in range(rows):
        for j in range(d):
            out[u64(j * rows + i)] = X[u64(b0 + i), j]


@kernel
def load_input(spec, use_blas, X, b0, rows, acts):
    """Rows X[b0:b0+rows] into the input slot, in the layout the network reads
    (row-major when ``input_rows``, else feature-major)."""
    if input_rows(spec, use_blas):
        d = X.shape[1]
        for i in range(rows):
            for j in range(d):
                acts[u64(i * d + j)] = X[u64(b0 + i), j]
    else:
        gather_block(X, b0, rows, acts)


@kernel
def scatter_block(buf, off, rows, out, b0):
    """out[b0:b0+rows] (rows, k) = the feature-major (k, rows) block at buf[off:]."""
    k = out.shape[1]
    for i in range(rows):
        for j in range(k):
            out[u64(b0 + i), j] = buf[u64(off + j * rows + i)]


@kernel
def batch_weight(sw, order, b0, rows):
    """The weight total of the batch order[b0:b0+rows]: the sum of its rows'
    weights ``sw``, in row order (its row count when ``sw`` is empty)."""
    if sw.shape[0] == 0:
        return float(rows)
    total = 0.0
    for i in range(rows):
        total += sw[order[u64(b0 + i)]]
    return total


@kernel
def reported_loss(data_loss, l2_loss, scale):
    """The batch loss recorded: data_loss + scale * l2_loss; ``scale`` is 1
    except for scikit-learn's multi-output squared error (see
    ``train_batches``). With 1 the product is exact, fused or not, so the sum
    is data_loss + l2_loss to the bit."""
    return data_loss + l2_loss * scale


@kernel
def train_batches(X, T, sw, order, start, stop, batch_size, epoch_rows,
                  spec, fspec, use_blas, params, grads, state, bnbuf,
                  acts, work, d0, d1, tbuf, wbuf,
                  wmask, l2, l2_per_row, loss_code,
                  opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at, loss_scale):
    """Train on rows order[start:stop] in minibatches of ``batch_size``.

    ``order`` may hold several epochs' row orders end to end, each
    ``epoch_rows`` long: a batch never spans two of them (each epoch ends
    with its own smaller batch), so one call can train several epochs.

    X (n, in), T (n, k) float targets, sw (n,) row weights or empty; each batch
    is gathered into ``acts`` slot 0 / ``tbuf`` / ``wbuf``, then forward, loss,
    backward, l2 and one optimizer update run. ``losses[loss_at + b]`` gets
    batch b's loss (before its update, l2 included) and ``corrects[...]`` its
    count of rows classified right; ``tstep[0]`` counts steps. With
    ``loss_scale`` s other than 1 the recorded loss is scikit-learn's for
    multi-output squared error: data loss + s * L2 term (the network trains
    with the L2 factor divided by its s outputs, see ``fastnn.sklearn``).
    Returns the number of batches done: fewer than asked means the loss of the
    next one was not finite, and that batch's update was not applied.
    """
    k = T.shape[1]
    weighted = sw.shape[0] > 0
    done = 0
    b0 = start
    while b0 < stop:
        rows = batch_rows(b0, stop, batch_size, epoch_rows)
        gather_batch(spec, use_blas, X, T, sw, order, b0, rows, acts, tbuf, wbuf)
        step = tstep[0] + 1
        out_off = network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                                  TRAINING, use_blas, seed, step, ZERO, rows)
        loss, correct = loss_grad(acts, out_off, tbuf, ZERO, wbuf, weighted, k, rows,
                                  loss_code, d0, ZERO)
        network_backward(spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas,
                         d0, d1)
        # the batch's weight total: per-row L2 divides by it
        wtot = batch_weight(sw, order, b0, rows) if l2_per_row else float(rows)
        l2_step, l2_loss = batch_l2(spec, params, l2, wtot, l2_per_row)
        data_loss = loss
        loss = data_loss + l2_loss
        if not np.isfinite(loss):
            losses[u64(loss_at + done)] = loss
            return done
        tstep[0] = step
        optimizer_update(opt_code, params, grads, grads[:0], s1, s2, wmask, hp, step, l2_step)
        losses[u64(loss_at + done)] = reported_loss(data_loss, l2_loss, loss_scale)
        corrects[u64(loss_at + done)] = correct
        done += 1
        b0 += rows
    return done


@kernel
def predict_rows(X, spec, fspec, use_blas, params, state, bnbuf, acts, work,
                 block, out):
    """Inference: out (n, k) = the network's last outputs for X (n, in),
    computed ``block`` rows at a time through the workspace."""
    n = X.shape[0]
    for b0 in range(0, n, block):
        rows = min(block, n - b0)
        load_input(spec, use_blas, X, b0, rows, acts)
        off = network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                              INFERENCE, use_blas, ZERO, ZERO, ZERO, rows)
        scatter_block(acts, off, rows, out, b0)
    return 0
