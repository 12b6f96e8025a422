"""Dense layer products: hand-written loops for narrow layers, BLAS for wide.

A BLAS call costs a microsecond or more before it does any work, more than a
whole narrow layer (2-3-3) takes, so narrow layers use loops whose innermost
index runs over contiguous output units (it vectorises). Wide layers use
``np.dot`` with an ``out`` buffer (scipy's OpenBLAS ``gemm``, no allocation).
Which one a layer uses is decided once, from its shape, by the Python layer.

Every reduction over batch rows (``db``, the hand-loop ``dW``) runs over rows
in order; BLAS ``gemm`` splits work over output blocks, not over the summed
dimension, so its results do not depend on the thread count either (tested).
"""

import numpy as np

from .config import kernel


@kernel
def dense_forward(X, W, b, has_bias, use_blas, Z):
    """Z = X @ W + b.  X (n, in), W (in, out), b (out,), Z (n, out) written."""
    n, n_in = X.shape
    n_out = W.shape[1]
    if use_blas:
        np.dot(X, W, Z)
        if has_bias:
            for i in range(n):
                for j in range(n_out):
                    Z[i, j] += b[j]
        return
    for i in range(n):
        if has_bias:
            for j in range(n_out):
                Z[i, j] = b[j]
        else:
            for j in range(n_out):
                Z[i, j] = 0.0
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                Z[i, j] += x * W[k, j]


@kernel
def dense_backward(X, W, D, has_bias, use_blas, need_dx, dW, db, dX):
    """Gradients of a dense layer given D = dLoss/dZ (n, out).

    Writes dW = X.T @ D (in, out), db = sum over rows of D (out,), and, when
    ``need_dx``, dX = D @ W.T (n, in).
    """
    n, n_in = X.shape
    n_out = W.shape[1]
    if has_bias:
        for j in range(n_out):
            db[j] = 0.0
        for i in range(n):
            for j in range(n_out):
                db[j] += D[i, j]
    if use_blas:
        np.dot(X.T, D, dW)
        if need_dx:
            np.dot(D, W.T, dX)
        return
    for k in range(n_in):
        for j in range(n_out):
            dW[k, j] = 0.0
    for i in range(n):
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                dW[k, j] += x * D[i, j]
    if need_dx:
        for i in range(n):
            for k in range(n_in):
                s = D.dtype.type(0.0)
                for j in range(n_out):
                    s += D[i, j] * W[k, j]
                dX[i, k] = s
