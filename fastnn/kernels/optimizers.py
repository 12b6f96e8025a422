"""Optimizer updates: one in-place elementwise pass over the flat buffers.

P (parameters), G (gradients), S1, S2 (state) are 1-D arrays of equal length;
``wmask`` is 1 where an entry belongs to a weight matrix (AdamW decays only
those). ``hp`` holds the hyper-parameters (see codes.H_*), ``t`` the step count
(already incremented for this step, so the first step has t = 1).

* SGD:      S1 = mom*S1 - lr*G;  P += S1  (Nesterov: P += mom*S1 - lr*G)
* MOMENTUM: S1 = beta*S1 + (1-beta)*G;  P -= lr*S1
* RMSPROP:  S1 = rho*S1 + (1-rho)*G^2;  P -= lr*G/(sqrt(S1)+eps)
* ADAM:     S1 = b1*S1 + (1-b1)*G; S2 = b2*S2 + (1-b2)*G^2;
            P -= lr * (S1/(1-b1^t)) / (sqrt(S2/(1-b2^t)) + eps)
* ADAMW:    ADAM, plus P -= lr*decay*P_old on weight entries
* ADAM_SK:  scikit-learn's form: P -= lr*sqrt(1-b2^t)/(1-b1^t) * S1/(sqrt(S2)+eps)
"""

import numpy as np

from .codes import (
    ADAM,
    ADAM_SK,
    ADAMW,
    H_BETA1,
    H_BETA2,
    H_DECAY,
    H_EPS,
    H_LR,
    H_NESTEROV,
    MOMENTUM,
    RMSPROP,
    SGD,
)
from .config import kernel
from .reduce import u64


@kernel
def optimizer_update(code, P, G, S1, S2, wmask, hp, t):
    """Apply one update of optimizer ``code`` to every parameter in place."""
    f = P.dtype.type
    lr = f(hp[H_LR])
    b1 = f(hp[H_BETA1])
    b2 = f(hp[H_BETA2])
    eps = f(hp[H_EPS])
    one = f(1.0)
    n = P.shape[0]
    if code == SGD:
        if hp[H_NESTEROV] != 0.0:
            for i in range(n):
                v = b1 * S1[i] - lr * G[i]
                S1[i] = v
                P[i] += b1 * v - lr * G[i]
        else:
            for i in range(n):
                v = b1 * S1[i] - lr * G[i]
                S1[i] = v
                P[i] += v
    elif code == MOMENTUM:
        for i in range(n):
            v = b1 * S1[i] + (one - b1) * G[i]
            S1[i] = v
            P[i] -= lr * v
    elif code == RMSPROP:
        for i in range(n):
            g = G[i]
            s = b1 * S1[i] + (one - b1) * g * g
            S1[i] = s
            P[i] -= lr * g / (np.sqrt(s) + eps)
    elif code == ADAM or code == ADAMW:
        # reciprocals of the bias corrections: a multiply instead of a divide
        ic1 = f(1.0 / (1.0 - hp[H_BETA1] ** t))
        ic2 = f(1.0 / (1.0 - hp[H_BETA2] ** t))
        decay = f(hp[H_DECAY]) if code == ADAMW else f(0.0)
        for i in range(n):
            g = G[i]
            m = b1 * S1[i] + (one - b1) * g
            v = b2 * S2[i] + (one - b2) * g * g
            S1[i] = m
            S2[i] = v
            u = (m * ic1) / (np.sqrt(v * ic2) + eps)
            if wmask[i]:
                u += decay * P[i]
            P[i] -= lr * u
    elif code == ADAM_SK:
        step = f(hp[H_LR] * np.sqrt(1.0 - hp[H_BETA2] ** t) / (1.0 - hp[H_BETA1] ** t))
        for i in range(n):
            g = G[i]
            m = b1 * S1[i] + (one - b1) * g
            v = b2 * S2[i] + (one - b2) * g * g
            S1[i] = m
            S2[i] = v
            P[i] -= step * m / (np.sqrt(v) + eps)


@kernel
def add_l2(P, G, wmask, l2):
    """G += l2 * P on weight entries; returns 0.5 * l2 * sum(P^2) over them,
    summed in the fixed 8-lane order of ``reduce.py`` (so it vectorises)."""
    f = P.dtype.type
    c = f(l2)
    zero = f(0.0)
    n = P.shape[0]
    for i in range(n):
        G[u64(i)] += c * P[u64(i)] if wmask[u64(i)] else zero
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    i = 0
    while i + 8 <= n:
        p0 = P[u64(i)] if wmask[u64(i)] else zero
        p1 = P[u64(i + 1)] if wmask[u64(i + 1)] else zero
        p2 = P[u64(i + 2)] if wmask[u64(i + 2)] else zero
        p3 = P[u64(i + 3)] if wmask[u64(i + 3)] else zero
        p4 = P[u64(i + 4)] if wmask[u64(i + 4)] else zero
        p5 = P[u64(i + 5)] if wmask[u64(i + 5)] else zero
        p6 = P[u64(i + 6)] if wmask[u64(i + 6)] else zero
        p7 = P[u64(i + 7)] if wmask[u64(i + 7)] else zero
        s0 += p0 * p0
        s1 += p1 * p1
        s2 += p2 * p2
        s3 += p3 * p3
        s4 += p4 * p4
        s5 += p5 * p5
        s6 += p6 * p6
        s7 += p7 * p7
        i += 8
    while i < n:
        p = P[u64(i)] if wmask[u64(i)] else zero
        s0 += p * p
        i += 1
    return 0.5 * l2 * (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))
