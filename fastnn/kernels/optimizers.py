"""Optimizer updates: one in-place elementwise pass over the flat buffers.

P (parameters), G (gradients), S1, S2 (state) are 1-D arrays of equal length;
the gradient is G, or G + G2 when ``G2`` is not empty (a chunked batch: G
holds the sum of all but the last chunk's gradients, G2 the last one's,
added as the update reads them; a separate summing pass cost W2 about 20 us
a batch);
``wmask`` is 1 where an entry belongs to a weight matrix (AdamW decays only
those). ``hp`` holds the hyper-parameters (see codes.H_*), ``t`` the step count
(already incremented for this step, so the first step has t = 1). ``l2``
adds the L2 term's gradient on the fly, G + l2 * P on weight entries, in the
same pass (G itself is left as it was; ``l2_penalty`` gives the loss term).

* SGD:      S1 = mom*S1 - lr*G;  P += S1  (Nesterov: P += mom*S1 - lr*G)
* MOMENTUM: S1 = beta*S1 + (1-beta)*G;  P -= lr*S1
* RMSPROP:  S1 = rho*S1 + (1-rho)*G^2;  P -= lr*G/(sqrt(S1)+eps)
* ADAM:     S1 = b1*S1 + (1-b1)*G; S2 = b2*S2 + (1-b2)*G^2;
            P -= lr * (S1/(1-b1^t)) / (sqrt(S2/(1-b2^t)) + eps)
* ADAMW:    ADAM, plus P -= lr*decay*P_old on weight entries
* ADAM_SK:  scikit-learn's form: P -= lr*sqrt(1-b2^t)/(1-b1^t) * S1/(sqrt(S2)+eps)

Every FLUSH_EVERY steps the state's subnormal entries are set to zero
(``flush_subnormal``). A weight whose gradient stays zero (a dead ReLU unit,
an input that is always 0) has its state decay geometrically into the
subnormal range, where it sticks (0.9 times the smallest subnormal rounds
back to it), and arithmetic on subnormals is slow. Measured on W2
(784-256-128-10, Adam): 40% of the first moment was subnormal from the
second epoch on, and the update pass took 2.6x as long (261 against 102 us
per batch). A subnormal state entry moves its weight by at least 1e30 times
less than the weight's rounding step (Adam's divisor is at least eps), so no
weight that is not itself within 1e-28 of zero changes. Flushing in the
update loop itself cost 13% of the Adam pass; a separate pass every
FLUSH_EVERY steps costs nothing measurable and leaves an entry subnormal for
at most FLUSH_EVERY steps (it then stays 0 while its gradient is 0).
"""

import numpy as np

from .codes import (
    ADAM,
    ADAM_SK,
    ADAMW,
    DENSE,
    H_BETA1,
    H_BETA2,
    H_DECAY,
    H_EPS,
    H_LR,
    H_NESTEROV,
    K_IN,
    K_KIND,
    K_OUT,
    K_W,
    MOMENTUM,
    RMSPROP,
    SGD,
)
from .config import kernel
from .reduce import ZERO, lane_dot, u64

FLUSH_EVERY = 64


@kernel
def optimizer_update(code, P, G, G2, S1, S2, wmask, hp, t, l2):
    """Apply one update of optimizer ``code`` to every parameter in place,
    from the gradient G, or G + G2 when G2 is not empty.

    Each optimizer's loop is written twice, one per gradient source: a
    branch on that inside the loop stops Numba pruning the reference counts
    of the arrays it reads, and the loop no longer vectorises (measured 50x
    slower)."""
    f = P.dtype.type
    lr = f(hp[H_LR])
    b1 = f(hp[H_BETA1])
    b2 = f(hp[H_BETA2])
    eps = f(hp[H_EPS])
    n = P.shape[0]
    c = f(l2)         # every loop reads G through _grad: L2 costs no extra pass
    two = G2.shape[0] > 0
    if code == SGD and hp[H_NESTEROV] != 0.0:
        if two:
            for i in range(n):
                _nesterov_at(P, S1, i, _grad2(G, G2, P, wmask, c, i), b1, lr)
        else:
            for i in range(n):
                _nesterov_at(P, S1, i, _grad(G, P, wmask, c, i), b1, lr)
    elif code == SGD:
        if two:
            for i in range(n):
                _sgd_at(P, S1, i, _grad2(G, G2, P, wmask, c, i), b1, lr)
        else:
            for i in range(n):
                _sgd_at(P, S1, i, _grad(G, P, wmask, c, i), b1, lr)
    elif code == MOMENTUM:
        if two:
            for i in range(n):
                _momentum_at(P, S1, i, _grad2(G, G2, P, wmask, c, i), b1, lr)
        else:
            for i in range(n):
                _momentum_at(P, S1, i, _grad(G, P, wmask, c, i), b1, lr)
    elif code == RMSPROP:
        if two:
            for i in range(n):
                _rmsprop_at(P, S1, i, _grad2(G, G2, P, wmask, c, i), b1, lr, eps)
        else:
            for i in range(n):
                _rmsprop_at(P, S1, i, _grad(G, P, wmask, c, i), b1, lr, eps)
    elif code == ADAM or code == ADAMW:
        # reciprocals of the bias corrections: a multiply instead of a divide
        ic1 = f(1.0 / (1.0 - hp[H_BETA1] ** t))
        ic2 = f(1.0 / (1.0 - hp[H_BETA2] ** t))
        decay = f(hp[H_DECAY]) if code == ADAMW else f(0.0)
        if two:
            for i in range(n):
                _adam_at(P, S1, S2, wmask, i, _grad2(G, G2, P, wmask, c, i), b1, b2, eps,
                         lr, ic1, ic2, decay)
        else:
            for i in range(n):
                _adam_at(P, S1, S2, wmask, i, _grad(G, P, wmask, c, i), b1, b2, eps, lr,
                         ic1, ic2, decay)
    elif code == ADAM_SK:
        step = f(hp[H_LR] * np.sqrt(1.0 - hp[H_BETA2] ** t) / (1.0 - hp[H_BETA1] ** t))
        if two:
            for i in range(n):
                _adam_sk_at(P, S1, S2, i, _grad2(G, G2, P, wmask, c, i), b1, b2, eps, step)
        else:
            for i in range(n):
                _adam_sk_at(P, S1, S2, i, _grad(G, P, wmask, c, i), b1, b2, eps, step)
    if t % FLUSH_EVERY == 0:
        flush_subnormal(S1)
        flush_subnormal(S2)


@kernel
def _sgd_at(P, S1, i, g, mom, lr):
    v = mom * S1[u64(i)] - lr * g
    S1[u64(i)] = v
    P[u64(i)] += v


@kernel
def _nesterov_at(P, S1, i, g, mom, lr):
    v = mom * S1[u64(i)] - lr * g
    S1[u64(i)] = v
    P[u64(i)] += mom * v - lr * g


@kernel
def _momentum_at(P, S1, i, g, beta, lr):
    v = beta * S1[u64(i)] + (P.dtype.type(1.0) - beta) * g
    S1[u64(i)] = v
    P[u64(i)] -= lr * v


@kernel
def _rmsprop_at(P, S1, i, g, rho, lr, eps):
    s = rho * S1[u64(i)] + (P.dtype.type(1.0) - rho) * g * g
    S1[u64(i)] = s
    P[u64(i)] -= lr * g / (np.sqrt(s) + eps)


@kernel
def _adam_at(P, S1, S2, wmask, i, g, b1, b2, eps, lr, ic1, ic2, decay):
    one = P.dtype.type(1.0)
    m = b1 * S1[u64(i)] + (one - b1) * g
    v = b2 * S2[u64(i)] + (one - b2) * g * g
    S1[u64(i)] = m
    S2[u64(i)] = v
    u = (m * ic1) / (np.sqrt(v * ic2) + eps) + decay * P[u64(i)] * P.dtype.type(wmask[u64(i)])
    P[u64(i)] -= lr * u


@kernel
def _adam_sk_at(P, S1, S2, i, g, b1, b2, eps, step):
    one = P.dtype.type(1.0)
    m = b1 * S1[u64(i)] + (one - b1) * g
    v = b2 * S2[u64(i)] + (one - b2) * g * g
    S1[u64(i)] = m
    S2[u64(i)] = v
    P[u64(i)] -= step * m / (np.sqrt(v) + eps)


@kernel
def flush_subnormal(S):
    """S[i] = 0 where |S[i]| is subnormal (NaN and inf kept)."""
    tiny = S.dtype.type(np.finfo(S.dtype).tiny)
    zero = S.dtype.type(0.0)
    for i in range(S.shape[0]):
        x = S[u64(i)]
        S[u64(i)] = x if not abs(x) < tiny else zero


@kernel
def _grad(G, P, wmask, c, i):
    """G[i] plus the L2 term c * P[i] on weight entries.

    The mask multiplies rather than selects, here and wherever a masked term
    is added: ``x + (a*b if m else 0)`` lets LLVM fold the add into the
    select and fuse it into an FMA in some compile contexts and not in
    others (measured: a fresh compile and a cache load of the same kernel
    gave different bits), while ``x + a*b*m`` always fuses the same way."""
    return G[u64(i)] + c * P[u64(i)] * G.dtype.type(wmask[u64(i)])


@kernel
def _grad2(G, G2, P, wmask, c, i):
    """``_grad`` of the gradient G + G2 (summed first, as a separate pass would)."""
    return (G[u64(i)] + G2[u64(i)]) + c * P[u64(i)] * G.dtype.type(wmask[u64(i)])


@kernel
def add_l2(spec, P, G, wmask, l2):
    """G += l2 * P on weight entries; returns ``l2_penalty`` of all of P."""
    c = P.dtype.type(l2)
    for i in range(P.shape[0]):
        G[u64(i)] = _grad(G, P, wmask, c, i)
    return l2_penalty(spec, P, ZERO, P.shape[0], l2)


@kernel
def batch_l2(spec, P, l2, weight, per_row):
    """(L2 factor, L2 loss term) of a training batch whose rows weigh
    ``weight`` in all (float; its row count when unweighted): the factor is
    ``l2``, or ``l2 / weight`` when ``per_row`` (scikit-learn's scaling: alpha
    over the batch's sample-weight sum), and (0, 0) without L2."""
    if l2 <= 0.0:
        return 0.0, 0.0
    c = l2 / weight if per_row else l2
    return c, l2_penalty(spec, P, ZERO, P.shape[0], c)


@kernel
def l2_penalty(spec, P, p0, p1, l2):
    """0.5 * l2 * sum(P^2) over the weight entries in P[p0:p1]: the Dense
    layers' W runs (``spec``; the entries ``wmask`` marks), each summed in
    the fixed 8-lane order of ``reduce.py``, layer by layer."""
    s = 0.0
    for l in range(spec.shape[0]):
        if spec[l, K_KIND] == DENSE:
            lo = max(p0, spec[l, K_W])
            hi = min(p1, spec[l, K_W] + spec[l, K_IN] * spec[l, K_OUT])
            if hi > lo:
                s += lane_dot(P, lo, P, lo, hi - lo)
    return 0.5 * l2 * s
