"""BatchNorm and Dropout, forward and backward.

BatchNorm (per column j of X (n, w)), training:
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


@kernel
def batchnorm_forward(X, gamma, beta, training, momentum, eps,
                      run_mean, run_var, mean, inv, XH, Y):
    """Y = gamma * XH + beta; in training also updates running stats in place
    and keeps the batch ``mean``/``inv`` (w,) and ``XH`` (n, w) for backward."""
    n, w = X.shape
    if training:
        for j in range(w):
            mean[j] = 0.0
            inv[j] = 0.0
        for i in range(n):
            for j in range(w):
                mean[j] += X[i, j]
        for j in range(w):
            mean[j] /= n
        for i in range(n):
            for j in range(w):
                d = X[i, j] - mean[j]
                inv[j] += d * d
        m = X.dtype.type(momentum)
        for j in range(w):
            var = inv[j] / n
            run_mean[j] = m * run_mean[j] + (1 - m) * mean[j]
            run_var[j] = m * run_var[j] + (1 - m) * var
            inv[j] = 1.0 / np.sqrt(var + eps)
        for i in range(n):
            for j in range(w):
                xh = (X[i, j] - mean[j]) * inv[j]
                XH[i, j] = xh
                Y[i, j] = gamma[j] * xh + beta[j]
    else:
        for j in range(w):
            mean[j] = run_mean[j]
            inv[j] = 1.0 / np.sqrt(run_var[j] + eps)
        for i in range(n):
            for j in range(w):
                Y[i, j] = gamma[j] * ((X[i, j] - mean[j]) * inv[j]) + beta[j]


@kernel
def batchnorm_backward(dY, XH, gamma, inv, need_dx, dgamma, dbeta, dX):
    """dgamma, dbeta (w,) written; dX (n, w) written when ``need_dx``."""
    n, w = dY.shape
    for j in range(w):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(n):
        for j in range(w):
            dgamma[j] += dY[i, j] * XH[i, j]
            dbeta[j] += dY[i, j]
    if not need_dx:
        return
    # sum_i dXH = gamma*dbeta and sum_i dXH*XH = gamma*dgamma
    for i in range(n):
        for j in range(w):
            dX[i, j] = (gamma[j] * inv[j] / n) * (
                n * dY[i, j] - dbeta[j] - XH[i, j] * dgamma[j])


@kernel
def _mix64(x):
    """splitmix64 finaliser: a well-mixed 64-bit hash of x (uint64)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@kernel
def dropout_mask(M, rate, seed, step, layer):
    """Fill M (1-D) with 0 or 1/(1-rate), keeping each element with
    probability 1-rate; a pure function of (seed, step, layer, index)."""
    keep = M.dtype.type(1.0 / (1.0 - rate))
    zero = M.dtype.type(0.0)
    base = _mix64(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
                  + np.uint64(step) * np.uint64(0xD1B54A32D192ED03)
                  + np.uint64(layer) * np.uint64(0x8CB92BA72F3D8DD7))
    for i in range(M.shape[0]):
        h = _mix64(base + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
        u = (h >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        M[i] = keep if u >= rate else zero


@kernel
def dropout_apply(X, M, Y):
    """Y = X * M elementwise over 1-D views (also the backward: dX = dY * M)."""
    for i in range(X.shape[0]):
        Y[i] = X[i] * M[i]
