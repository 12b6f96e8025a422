"""BatchNorm and Dropout, forward and backward.

Buffers are feature-major (see dense.py). BatchNorm (per feature j), training:
    mu = mean_i X, var = mean_i (X - mu)^2 (biased), inv = 1/sqrt(var + eps)
    XH = (X - mu) * inv,  Y = gamma * XH + beta
    running = momentum * running + (1 - momentum) * batch statistic
inference uses the running statistics. Backward:
    dgamma = sum_i dY * XH, dbeta = sum_i dY,
    dX = inv/n * (n*dXH - sum_i dXH - XH * sum_i dXH*XH),  dXH = dY * gamma.
Dropout (inverted): Y = X * M with M = (u >= rate) / (1 - rate), u uniform from
a counter-based hash of (seed, step, layer, element), so masks do not depend on
threads or on call order; backward dX = dY * M.
"""

import numpy as np

from .config import kernel
from .reduce import lane_dot, lane_sum, u64


@kernel
def batchnorm_forward(A, xo, n, rows, P, go, beo, training, momentum, eps,
                      state, so, bnbuf, XH, ho, Y, yo):
    """Y (n, rows) at Y[yo:] from X (n, rows) at A[xo:] (feature-major);
    gamma, beta at P[go:], P[beo:]; running mean, var at state[so:], state[so+n:].
    In training keeps XH at XH[ho:] and the batch mean / 1/std in
    bnbuf[so:], bnbuf[so+n:] for the backward pass."""
    f = A.dtype.type
    m = f(momentum)
    one = f(1.0)
    for j in range(n):
        xb = xo + j * rows
        hb = ho + j * rows
        yb = yo + j * rows
        g = P[u64(go + j)]
        be = P[u64(beo + j)]
        if training:
            mu = lane_sum(A, xb, rows) / f(rows)
            for i in range(rows):
                XH[u64(hb + i)] = A[u64(xb + i)] - mu
            var = lane_dot(XH, hb, XH, hb, rows) / f(rows)
            inv = one / np.sqrt(var + f(eps))
            state[u64(so + j)] = m * state[u64(so + j)] + (one - m) * mu
            state[u64(so + n + j)] = m * state[u64(so + n + j)] + (one - m) * var
            bnbuf[u64(so + j)] = mu
            bnbuf[u64(so + n + j)] = inv
            for i in range(rows):
                xh = XH[u64(hb + i)] * inv
                XH[u64(hb + i)] = xh
                Y[u64(yb + i)] = g * xh + be
        else:
            mu = state[u64(so + j)]
            inv = one / np.sqrt(state[u64(so + n + j)] + f(eps))
            for i in range(rows):
                Y[u64(yb + i)] = g * ((A[u64(xb + i)] - mu) * inv) + be


@kernel
def batchnorm_backward(D, do, n, rows, XH, ho, P, go, bnbuf, so, G, beo,
                       need_dx, dX, dxo):
    """dgamma into G[go:], dbeta into G[beo:] (n,); dX (n, rows) at dX[dxo:]
    when ``need_dx``. D = dLoss/dY (n, rows) at D[do:]."""
    f = D.dtype.type
    for j in range(n):
        db_ = do + j * rows
        hb = ho + j * rows
        dg = lane_dot(D, db_, XH, hb, rows)
        dbe = lane_sum(D, db_, rows)
        G[u64(go + j)] = dg
        G[u64(beo + j)] = dbe
        if need_dx:
            # sum_i dXH = gamma*dbeta and sum_i dXH*XH = gamma*dgamma
            c = P[u64(go + j)] * bnbuf[u64(so + n + j)] / f(rows)
            xb = dxo + j * rows
            fr = f(rows)
            for i in range(rows):
                dX[u64(xb + i)] = c * (fr * D[u64(db_ + i)] - dbe - XH[u64(hb + i)] * dg)


@kernel
def _mix64(x):
    """splitmix64 finaliser: a well-mixed 64-bit hash of x (uint64)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@kernel
def dropout_mask(M, rate, seed, step, layer, rows, row0, total):
    """Fill M (width, rows) feature-major with 0 or 1/(1-rate), keeping each
    element with probability 1-rate; a pure function of (seed, step, layer,
    index). The index is the element's place in the whole batch of ``total``
    rows, of which M holds rows row0 .. row0+rows-1, so a batch computed in
    row chunks gets the same mask as computed whole."""
    keep = M.dtype.type(1.0 / (1.0 - rate))
    zero = M.dtype.type(0.0)
    base = _mix64(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
                  + np.uint64(step) * np.uint64(0xD1B54A32D192ED03)
                  + np.uint64(layer) * np.uint64(0x8CB92BA72F3D8DD7))
    width = M.shape[0] // rows
    for j in range(width):
        first = np.uint64(j * total + row0)
        for i in range(rows):
            h = _mix64(base + (first + np.uint64(i)) * np.uint64(0x9E3779B97F4A7C15))
            u = (h >> np.uint64(11)) * (1.0 / 9007199254740992.0)
            M[u64(j * rows + i)] = keep if u >= rate else zero


@kernel
def dropout_apply(X, M, Y):
    """Y = X * M elementwise over 1-D views (also the backward: dX = dY * M)."""
    for i in range(X.shape[0]):
        Y[i] = X[i] * M[i]
