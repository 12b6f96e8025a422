"""Dense layer products over feature-major buffers.

Layout: a batch of ``rows`` rows of a width-``w`` activation is stored
feature-major, ``buf[o + j*rows + i]`` = feature j of row i, so every inner
loop runs over the batch, contiguous, and vectorises (the layout is
"structure of arrays"; with one row it is the same as row-major). Weights
``W`` (n_in, n_out) and bias ``b`` (n_out,) are row-major runs of the flat
parameter buffer ``P`` at offsets ``wo`` and ``bo`` (``bo < 0``: no bias);
with ``wt`` (big layers, BLAS only) W is stored transposed, as the row-major
(n_out, n_in) run Wt, and gemm reads it without a transpose (faster there,
see ``model.TRANSPOSE_MIN_WEIGHTS``).

Narrow layers use these loops; wide ones ``np.dot`` (scipy's OpenBLAS gemm,
into preallocated output, no allocation): a gemm call costs about 0.1 us
before any work, which narrow layers cannot repay. The choice is the model's,
by shape and batch size. Sums over rows (dW, db) use the fixed vectorised
order of ``reduce.py``; BLAS gemm splits work over output blocks, never over the
summed dimension, so neither depends on the thread count (tested).
"""

import numpy as np

from .config import kernel
from .reduce import lane_dot, lane_sum, u64


@kernel
def dense_forward(A, xo, n_in, P, wo, bo, n_out, rows, use_blas, Z, zo, x_rows, wt):
    """Z (n_out, rows) at Z[zo:] = W.T @ X + b, X (n_in, rows) at A[xo:].

    ``x_rows`` (BLAS only): X is stored row-major (rows, n_in) instead, as the
    gathered network input is; gemm takes the transpose for free. ``wt``:
    W is stored transposed (BLAS only)."""
    if use_blas:
        Zv = Z[zo:zo + n_out * rows].reshape((n_out, rows))
        if wt:
            Wt = P[wo:wo + n_in * n_out].reshape((n_out, n_in))
            if x_rows:
                np.dot(Wt, A[xo:xo + n_in * rows].reshape((rows, n_in)).T, Zv)
            else:
                np.dot(Wt, A[xo:xo + n_in * rows].reshape((n_in, rows)), Zv)
        else:
            W = P[wo:wo + n_in * n_out].reshape((n_in, n_out))
            if x_rows:
                np.dot(W.T, A[xo:xo + n_in * rows].reshape((rows, n_in)).T, Zv)
            else:
                np.dot(W.T, A[xo:xo + n_in * rows].reshape((n_in, rows)), Zv)
        if bo >= 0:
            for j in range(n_out):
                bj = P[u64(bo + j)]
                base = zo + j * rows
                for i in range(rows):
                    Z[u64(base + i)] += bj
        return
    zero = P.dtype.type(0.0)
    if rows == 1:
        for j in range(n_out):
            Z[u64(zo + j)] = P[u64(bo + j)] if bo >= 0 else zero
        for k in range(n_in):
            x = A[u64(xo + k)]
            wk = wo + k * n_out
            for j in range(n_out):
                Z[u64(zo + j)] += x * P[u64(wk + j)]
        return
    for j in range(n_out):
        base = zo + j * rows
        bj = P[u64(bo + j)] if bo >= 0 else zero
        w = P[u64(wo + j)]
        for i in range(rows):
            Z[u64(base + i)] = bj + w * A[u64(xo + i)]
        for k in range(1, n_in):
            w = P[u64(wo + k * n_out + j)]
            xb = xo + k * rows
            for i in range(rows):
                Z[u64(base + i)] += w * A[u64(xb + i)]


@kernel
def dense_backward(A, xo, n_in, P, wo, bo, n_out, rows, use_blas, D, do, G,
                   need_dx, dX, dxo, x_rows, wt):
    """Gradients of a dense layer from D = dLoss/dZ (n_out, rows) at D[do:].

    Writes dW = X @ D.T into G[wo:] (n_in, n_out; transposed with ``wt``),
    db = row sums of D into G[bo:], and when ``need_dx`` dX = W @ D
    (n_in, rows) into dX[dxo:]. ``x_rows`` and ``wt`` as in ``dense_forward``.
    """
    if bo >= 0:
        for j in range(n_out):
            G[u64(bo + j)] = lane_sum(D, do + j * rows, rows)
    if use_blas and wt:
        Dv = D[do:do + n_out * rows].reshape((n_out, rows))
        dWt = G[wo:wo + n_in * n_out].reshape((n_out, n_in))
        if x_rows:
            np.dot(Dv, A[xo:xo + n_in * rows].reshape((rows, n_in)), dWt)
        else:
            np.dot(Dv, A[xo:xo + n_in * rows].reshape((n_in, rows)).T, dWt)
        if need_dx:
            Wt = P[wo:wo + n_in * n_out].reshape((n_out, n_in))
            np.dot(Wt.T, Dv, dX[dxo:dxo + n_in * rows].reshape((n_in, rows)))
        return
    if use_blas:
        Dv = D[do:do + n_out * rows].reshape((n_out, rows))
        dW = G[wo:wo + n_in * n_out].reshape((n_in, n_out))
        if x_rows:
            np.dot(A[xo:xo + n_in * rows].reshape((rows, n_in)).T, Dv.T, dW)
        else:
            np.dot(A[xo:xo + n_in * rows].reshape((n_in, rows)), Dv.T, dW)
        if need_dx:
            W = P[wo:wo + n_in * n_out].reshape((n_in, n_out))
            np.dot(W, Dv, dX[dxo:dxo + n_in * rows].reshape((n_in, rows)))
        return
    if rows == 1:
        # one row: dW is the outer product X D^T, dX = W D (rows of W contiguous)
        for k in range(n_in):
            x = A[u64(xo + k)]
            wk = wo + k * n_out
            for j in range(n_out):
                G[u64(wk + j)] = x * D[u64(do + j)]
        if need_dx:
            for k in range(n_in):
                dX[u64(dxo + k)] = lane_dot(P, wo + k * n_out, D, do, n_out)
        return
    for k in range(n_in):
        xb = xo + k * rows
        for j in range(n_out):
            G[u64(wo + k * n_out + j)] = lane_dot(A, xb, D, do + j * rows, rows)
    if not need_dx:
        return
    for k in range(n_in):
        base = dxo + k * rows
        w = P[u64(wo + k * n_out)]
        for i in range(rows):
            dX[u64(base + i)] = w * D[u64(do + i)]
        for j in range(1, n_out):
            w = P[u64(wo + k * n_out + j)]
            db_ = do + j * rows
            for i in range(rows):
                dX[u64(base + i)] += w * D[u64(db_ + i)]
