"""Fused, numerically stable loss + output gradient.

``loss_grad(Z, T, w, code, D) -> (loss, correct)`` takes the last layer's raw outputs Z
(n, k), float targets T (n, k) and row weights w ((n,) or empty for none), writes
D = dLoss/dZ and returns the weighted mean over rows of the per-row loss:

* SOFTMAX_XENT: l_i = sum_j T_ij (lse_i - Z_ij), lse by log-sum-exp;
  D_i = (softmax(Z_i) * sum_j T_ij - T_i) * w_i / sum(w).
* BINARY_XENT:  l_i = sum_j max(z,0) - z t + log1p(exp(-|z|));
  D = (sigmoid(Z) - T) * w_i / sum(w).
* MSE / HALF_MSE: l_i = c * mean_j (Z_ij - T_ij)^2 with c = 1 or 1/2;
  D = 2c (Z - T) / k * w_i / sum(w).

No clipping: the formulas are stable as written. A NaN or infinite output
anywhere makes the loss NaN (``0 * sum(Z)`` is added), so divergence is seen.
``correct`` counts the rows classified right (argmax of Z equals argmax of T;
for binary, the fraction of columns where (z >= 0) == (t >= 0.5)); 0 for MSE.
"""

import math

from .codes import BINARY_XENT, HALF_MSE, MSE, SOFTMAX_XENT
from .config import kernel
from .mathfn import fast_exp, fast_sigmoid


@kernel
def loss_grad(Z, T, w, code, D):
    """(loss of the batch, rows classified right); D = dLoss/dZ written."""
    n, k = Z.shape
    weighted = w.shape[0] > 0
    wsum = 0.0
    if weighted:
        for i in range(n):
            wsum += w[i]
    else:
        wsum = float(n)
    total = 0.0
    check = 0.0
    correct = 0.0
    one = Z.dtype.type(1.0)
    zero = Z.dtype.type(0.0)
    for i in range(n):
        wi = w[i] if weighted else 1.0
        scale = Z.dtype.type(wi / wsum)
        row = 0.0
        if code == SOFTMAX_XENT:
            m = Z[i, 0]
            am = 0
            tm = 0
            for j in range(1, k):
                if Z[i, j] > m:
                    m = Z[i, j]
                    am = j
                if T[i, j] > T[i, tm]:
                    tm = j
            if am == tm:
                correct += 1.0
            s = zero
            tsum = zero
            for j in range(k):
                e = fast_exp(Z[i, j] - m)
                D[i, j] = e
                s += e
                tsum += T[i, j]
            lse = m + math.log(s)
            inv = one / s
            for j in range(k):
                row += T[i, j] * (lse - Z[i, j])
                D[i, j] = (D[i, j] * inv * tsum - T[i, j]) * scale
                check += Z[i, j]
        elif code == BINARY_XENT:
            for j in range(k):
                z = Z[i, j]
                t = T[i, j]
                row += (z if z > zero else zero) - z * t + math.log1p(fast_exp(-abs(z)))
                if (z >= zero) == (t >= 0.5):
                    correct += 1.0 / k
                D[i, j] = (fast_sigmoid(z) - t) * scale
                check += z
        else:
            c = 0.5 if code == HALF_MSE else 1.0
            g = Z.dtype.type(2.0 * c / k) * scale
            for j in range(k):
                diff = Z[i, j] - T[i, j]
                row += diff * diff
                D[i, j] = g * diff
                check += Z[i, j]
            row *= c / k
        total += wi * row
    return total / wsum + 0.0 * check, correct


# MSE is listed so that the registry can refer to every code from here.
LOSS_CODES = (SOFTMAX_XENT, BINARY_XENT, MSE, HALF_MSE)
