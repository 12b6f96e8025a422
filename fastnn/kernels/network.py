"""Whole-network kernels: forward, backward, and the minibatch training loop.

The network is described by two tables built once by the model (see
``codes.K_*`` / ``codes.F_*``): ``spec`` (layers, K_COLS) int64 and ``fspec``
(layers, F_COLS) float64. All buffers are flat and preallocated by the caller:

* ``params``/``grads`` (n_params,): every layer's W, b, gamma, beta;
* ``state``: BatchNorm running mean and variance; ``bnbuf`` the same size, for
  the batch mean and 1/std kept for the backward pass;
* ``acts``: slot 0 holds the gathered input batch, then one slot per layer
  output, each ``rows * width`` long, at offset ``spec[l, K_A] * rows``;
* ``work``: per layer, pre-activations (Dense), normalised inputs (BatchNorm)
  or the mask (Dropout), at ``spec[l, K_Z] * rows``;
* ``d0``/``d1``: two gradient buffers of max_rows * max_width, used in turn.

``train_batches`` runs many minibatches in one call: it gathers each batch by
row index into the buffers, runs forward, the fused loss, backward and one
optimizer update, and records the batch loss. Nothing is allocated in it.
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
    K_Z,
)
from .config import kernel
from .dense import dense_backward, dense_forward
from .losses import loss_grad
from .norm import batchnorm_backward, batchnorm_forward, dropout_apply, dropout_mask
from .optimizers import add_l2, optimizer_update


@kernel
def _view(buf, off, rows, cols):
    return buf[off:off + rows * cols].reshape((rows, cols))


@kernel
def network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                    training, use_blas, seed, step):
    """Forward pass over the batch already in acts slot 0 (``rows`` rows).

    Returns the offset of the last layer's output in ``acts``. In training
    BatchNorm uses batch statistics (and updates running ones) and Dropout
    draws its mask from (seed, step, layer)."""
    n_layers = spec.shape[0]
    in_off = 0
    for l in range(n_layers):
        kind = spec[l, K_KIND]
        n_in = spec[l, K_IN]
        n_out = spec[l, K_OUT]
        X = _view(acts, in_off, rows, n_in)
        a_off = spec[l, K_A] * rows
        z_off = spec[l, K_Z] * rows
        A = _view(acts, a_off, rows, n_out)
        Z = _view(work, z_off, rows, n_out)
        if kind == DENSE:
            w = spec[l, K_W]
            W = params[w:w + n_in * n_out].reshape((n_in, n_out))
            bo = spec[l, K_B]
            has_bias = bo >= 0
            b = params[bo:bo + n_out] if has_bias else params[0:0]
            dense_forward(X, W, b, has_bias, use_blas[l] != 0, Z)
            activation_forward(work[z_off:z_off + rows * n_out],
                               acts[a_off:a_off + rows * n_out], spec[l, K_ACT])
        elif kind == BATCHNORM:
            g = spec[l, K_W]
            bo = spec[l, K_B]
            s = spec[l, K_S]
            batchnorm_forward(X, params[g:g + n_out], params[bo:bo + n_out], training,
                              fspec[l, F_MOMENTUM], fspec[l, F_EPS],
                              state[s:s + n_out], state[s + n_out:s + 2 * n_out],
                              bnbuf[s:s + n_out], bnbuf[s + n_out:s + 2 * n_out], Z, A)
        elif kind == DROPOUT:
            src = acts[in_off:in_off + rows * n_out]
            dst = acts[a_off:a_off + rows * n_out]
            if training and fspec[l, F_RATE] > 0.0:
                M = work[z_off:z_off + rows * n_out]
                dropout_mask(M, fspec[l, F_RATE], seed, step, l)
                dropout_apply(src, M, dst)
            else:
                dst[:] = src
        in_off = a_off
    return in_off


@kernel
def network_backward(spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas,
                     d0, d1):
    """Backward pass; d0 holds dLoss/d(last output) on entry. Fills grads."""
    n_layers = spec.shape[0]
    cur = d0
    nxt = d1
    for l in range(n_layers - 1, -1, -1):
        kind = spec[l, K_KIND]
        n_in = spec[l, K_IN]
        n_out = spec[l, K_OUT]
        in_off = spec[l - 1, K_A] * rows if l > 0 else 0
        X = _view(acts, in_off, rows, n_in)
        z_off = spec[l, K_Z] * rows
        a_off = spec[l, K_A] * rows
        D = _view(cur, 0, rows, n_out)
        dX = _view(nxt, 0, rows, n_in)
        need_dx = l > 0
        if kind == DENSE:
            activation_backward(work[z_off:z_off + rows * n_out],
                                acts[a_off:a_off + rows * n_out],
                                cur[0:rows * n_out], spec[l, K_ACT])
            w = spec[l, K_W]
            W = params[w:w + n_in * n_out].reshape((n_in, n_out))
            dW = grads[w:w + n_in * n_out].reshape((n_in, n_out))
            bo = spec[l, K_B]
            has_bias = bo >= 0
            db = grads[bo:bo + n_out] if has_bias else grads[0:0]
            dense_backward(X, W, D, has_bias, use_blas[l] != 0, need_dx, dW, db, dX)
        elif kind == BATCHNORM:
            g = spec[l, K_W]
            bo = spec[l, K_B]
            s = spec[l, K_S]
            batchnorm_backward(D, _view(work, z_off, rows, n_out), params[g:g + n_out],
                               bnbuf[s + n_out:s + 2 * n_out], need_dx,
                               grads[g:g + n_out], grads[bo:bo + n_out], dX)
        elif kind == DROPOUT:
            if not need_dx:
                pass
            elif fspec[l, F_RATE] > 0.0:
                dropout_apply(cur[0:rows * n_out], work[z_off:z_off + rows * n_out],
                              nxt[0:rows * n_out])
            else:
                nxt[0:rows * n_out] = cur[0:rows * n_out]
        tmp = cur
        cur = nxt
        nxt = tmp
    return 0


@kernel
def train_batches(X, T, sw, order, start, stop, batch_size,
                  spec, fspec, use_blas, params, grads, state, bnbuf,
                  acts, work, d0, d1, tbuf, wbuf,
                  wmask, l2, l2_per_row, loss_code,
                  opt_code, hp, s1, s2, tstep, seed, losses, corrects, loss_at):
    """Train on rows order[start:stop] in minibatches of ``batch_size``.

    X (n, in), T (n, k) float targets, sw (n,) row weights or empty; each batch
    is gathered into ``acts`` slot 0 / ``tbuf`` / ``wbuf``, then forward, loss,
    backward, l2 and one optimizer update run. ``losses[loss_at + b]`` gets
    batch b's loss (before its update, l2 included) and ``corrects[...]`` its
    count of rows classified right; ``tstep[0]`` counts steps.
    Returns the number of batches done: fewer than asked means the loss of the
    next one was not finite, and that batch's update was not applied.
    """
    n_in = X.shape[1]
    k = T.shape[1]
    weighted = sw.shape[0] > 0
    done = 0
    for b0 in range(start, stop, batch_size):
        rows = min(batch_size, stop - b0)
        Xb = _view(acts, 0, rows, n_in)
        Tb = _view(tbuf, 0, rows, k)
        for i in range(rows):
            r = order[b0 + i]
            for j in range(n_in):
                Xb[i, j] = X[r, j]
            for j in range(k):
                Tb[i, j] = T[r, j]
            if weighted:
                wbuf[i] = sw[r]
        wb = wbuf[0:rows] if weighted else wbuf[0:0]
        step = tstep[0] + 1
        out_off = network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                                  True, use_blas, seed, step)
        Z = _view(acts, out_off, rows, k)
        D = _view(d0, 0, rows, k)
        loss, correct = loss_grad(Z, Tb, wb, loss_code, D)
        network_backward(spec, fspec, params, grads, bnbuf, acts, work, rows, use_blas, d0, d1)
        if l2 > 0.0:
            loss += add_l2(params, grads, wmask, l2 / rows if l2_per_row else l2)
        if not np.isfinite(loss):
            losses[loss_at + done] = loss
            return done
        tstep[0] = step
        optimizer_update(opt_code, params, grads, s1, s2, wmask, hp, step)
        losses[loss_at + done] = loss
        corrects[loss_at + done] = correct
        done += 1
    return done


@kernel
def predict_rows(X, spec, fspec, use_blas, params, state, bnbuf, acts, work,
                 block, out):
    """Inference: out (n, k) = the network's last outputs for X (n, in),
    computed ``block`` rows at a time through the workspace."""
    n, n_in = X.shape
    k = out.shape[1]
    for b0 in range(0, n, block):
        rows = min(block, n - b0)
        Xb = _view(acts, 0, rows, n_in)
        for i in range(rows):
            for j in range(n_in):
                Xb[i, j] = X[b0 + i, j]
        off = network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                              False, use_blas, 0, 0)
        Z = _view(acts, off, rows, k)
        for i in range(rows):
            for j in range(k):
                out[b0 + i, j] = Z[i, j]
    return 0
