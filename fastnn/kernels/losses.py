"""Fused, numerically stable loss + output gradient over feature-major buffers.

``loss_grad(Z, zo, T, to, W, weighted, k, rows, code, D, do)`` takes the last
layer's raw outputs Z (k, rows) at Z[zo:], float targets T (k, rows) at
T[to:], row weights W[0:rows] (used when ``weighted``; W[rows:8*rows] is
scratch), writes D = dLoss/dZ at D[do:] and returns (loss, correct), the loss
being the weighted mean over rows:

* SOFTMAX_XENT: l_i = sum_j T_ji (lse_i - Z_ji), lse by log-sum-exp;
  D_i = (softmax(Z_i) * sum_j T_ji - T_i) * w_i / sum(w).
* BINARY_XENT:  l_i = sum_j max(z,0) - z t + log1p(exp(-|z|));
  D = (sigmoid(Z) - T) * w_i / sum(w).
* MSE / HALF_MSE: l_i = c * mean_j (Z_ji - T_ji)^2 with c = 1 or 1/2;
  D = 2c (Z - T) / k * w_i / sum(w).
* HALF_POISSON (log link, scikit-learn's): l_i = sum_j exp(z) - t z + t log t - t;
  D = (exp(Z) - T) * w_i / sum(w).

No clipping: the formulas are stable as written. Only ``code + CLIPPED``
(the scikit-learn estimators' cross-entropies) reports the value
scikit-learn reports, each probability clipped to [eps, 1 - eps] (eps of the
dtype), i.e. each row's (softmax) or entry's (binary) loss held within
[-log(1 - eps), -log(eps)]; the gradient is the unclipped one, as there.
A NaN or infinite output anywhere makes the loss NaN (``0 * sum(Z)`` is
added), so divergence is seen.
``correct`` counts rows classified right (argmax of Z equals argmax of T; for
binary, the fraction of columns where (z >= 0) == (t >= 0.5)); 0 for MSE.
Every loop runs over the batch and touches at most four arrays (LLVM's
runtime alias checks allow no more if it is to vectorise); scratch rows are
separate slices (measured faster than offsets into one buffer).
"""

import numpy as np

from .codes import BINARY_XENT, CLIPPED, HALF_MSE, HALF_POISSON, SOFTMAX_XENT
from .config import kernel
from .mathfn import fast_exp, fast_log, fast_log1p, fast_sigmoid
from .reduce import ZERO, lane_dot, lane_sum, u64


@kernel
def _argmax_rows(Z, zo, k, rows, best, idx):
    """best[i], idx[i] = max and argmax over j of Z (k, rows) at Z[zo:] (first wins)."""
    f = Z.dtype.type
    for i in range(rows):
        best[i] = Z[u64(zo + i)]
        idx[i] = f(0.0)
    for j in range(1, k):
        fj = f(j)
        zb = zo + j * rows
        for i in range(rows):
            z = Z[u64(zb + i)]
            gt = z > best[i]
            best[i] = z if gt else best[i]
            idx[i] = fj if gt else idx[i]


@kernel
def loss_grad(Z, zo, T, to, w, weighted, k, rows, code, D, do):
    """(loss of the batch, rows classified right); D = dLoss/dZ written."""
    wsum = lane_sum(w, ZERO, rows) if weighted else float(rows)
    return loss_grad_part(Z, zo, T, to, w, weighted, k, rows, code, D, do, wsum)


@kernel
def loss_grad_part(Z, zo, T, to, w, weighted, k, rows, code, D, do, wsum):
    """``loss_grad`` for ``rows`` rows that are part of a batch whose row
    weights total ``wsum`` (its row count when unweighted): the returned loss
    and D are this part's share, so the parts of a batch add up to the batch.

    Each loop touches at most four arrays, so LLVM can vectorise it over the
    batch (more arrays than that exceed its runtime alias-check budget)."""
    f = Z.dtype.type
    zero = f(0.0)
    one = f(1.0)
    c = f(1.0 / wsum)
    clipped = code >= CLIPPED
    lo = hi = zero                # a loss held within [lo, hi] when clipped
    if clipped:
        code -= CLIPPED
        eps = np.finfo(Z.dtype).eps
        lo = f(-np.log1p(-eps))
        hi = f(-np.log(eps))
    S = w[rows:]                 # scratch after the row weights
    r = S[0:rows]                # per-row loss
    a = S[rows:2 * rows]         # scratch
    b = S[2 * rows:3 * rows]
    e = S[3 * rows:4 * rows]
    g = S[4 * rows:5 * rows]
    h = S[5 * rows:6 * rows]
    for i in range(rows):
        r[i] = zero
        g[i] = w[i] * c if weighted else c     # g = the row's share of the batch loss
    if code == SOFTMAX_XENT:
        _argmax_rows(Z, zo, k, rows, a, b)      # a = row max, b = argmax of Z
        _argmax_rows(T, to, k, rows, e, h)      # h = argmax of T
        for i in range(rows):
            e[i] = one if b[i] == h[i] else zero
        correct = float(lane_sum(e, ZERO, rows))
        for i in range(rows):
            b[i] = zero                          # b = sum exp, e = sum T
            e[i] = zero
        for j in range(k):
            zb = zo + j * rows
            db_ = do + j * rows
            for i in range(rows):
                x = fast_exp(Z[u64(zb + i)] - a[i])
                D[u64(db_ + i)] = x
                b[i] += x
            tb = to + j * rows
            for i in range(rows):
                e[i] += T[u64(tb + i)]
        for i in range(rows):
            a[i] = a[i] + fast_log(b[i])      # a = lse
            e[i] = e[i] / b[i]                # e = sum(T) / sum(exp)
        for j in range(k):
            zb = zo + j * rows
            tb = to + j * rows
            db_ = do + j * rows
            for i in range(rows):
                r[i] += T[u64(tb + i)] * (a[i] - Z[u64(zb + i)])
            for i in range(rows):
                D[u64(db_ + i)] = D[u64(db_ + i)] * e[i] - T[u64(tb + i)]
            for i in range(rows):
                D[u64(db_ + i)] *= g[i]
        if clipped:
            for i in range(rows):
                r[i] = min(max(r[i], lo), hi)
    elif code == BINARY_XENT:
        half = f(0.5)
        inv_k = f(1.0 / k)
        for i in range(rows):
            h[i] = zero
        for j in range(k):
            zb = zo + j * rows
            tb = to + j * rows
            db_ = do + j * rows
            for i in range(rows):
                z = Z[u64(zb + i)]
                az = z if z > zero else -z
                a[i] = fast_log1p(fast_exp(-az)) + (z if z > zero else zero)
            if clipped:
                for i in range(rows):
                    r[i] += min(max(a[i] - Z[u64(zb + i)] * T[u64(tb + i)], lo), hi)
            else:
                for i in range(rows):
                    r[i] += a[i] - Z[u64(zb + i)] * T[u64(tb + i)]
            for i in range(rows):
                z = Z[u64(zb + i)]
                t = T[u64(tb + i)]
                D[u64(db_ + i)] = fast_sigmoid(z) - t
                h[i] += inv_k if (z >= zero) == (t >= half) else zero
            for i in range(rows):
                D[u64(db_ + i)] *= g[i]
        correct = float(lane_sum(h, ZERO, rows))
    elif code == HALF_POISSON:
        for j in range(k):
            zb = zo + j * rows
            tb = to + j * rows
            db_ = do + j * rows
            for i in range(rows):
                t = T[u64(tb + i)]
                a[i] = t * fast_log(t) - t if t > zero else zero
            for i in range(rows):
                z = Z[u64(zb + i)]
                t = T[u64(tb + i)]
                p = fast_exp(z)
                r[i] += p - t * z + a[i]
                D[u64(db_ + i)] = (p - t) * g[i]
        correct = 0.0
    else:
        cc = 0.5 if code == HALF_MSE else 1.0
        g0 = f(2.0 * cc / k)
        for j in range(k):
            zb = zo + j * rows
            tb = to + j * rows
            db_ = do + j * rows
            for i in range(rows):
                diff = Z[u64(zb + i)] - T[u64(tb + i)]
                D[u64(db_ + i)] = diff
            for i in range(rows):
                diff = D[u64(db_ + i)]
                r[i] += diff * diff
                D[u64(db_ + i)] = (g0 * diff) * g[i]
        scale = f(cc / k)
        for i in range(rows):
            r[i] *= scale
        correct = 0.0
    total = lane_dot(w, ZERO, r, ZERO, rows) if weighted else lane_sum(r, ZERO, rows)
    check = lane_sum(Z, zo, k * rows)
    return float(total) / wsum + 0.0 * float(check), correct
