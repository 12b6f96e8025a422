"""Full-batch loss and gradient, for quasi-Newton solvers (L-BFGS).

``fullbatch_loss_grad`` returns, for the whole data set,

    loss  = sum_i w_i l_i / sum_i w_i  +  0.5 * l2 * sum(W**2)
    grads = d (scale * data loss + L2 term) / d params

where ``l_i`` is the loss of row i (``losses.loss_grad``), W runs over weight
matrices (``wmask``) and ``w`` is empty for unit weights. ``scale`` weighs the
data term of the gradient only: scikit-learn's L-BFGS pair for multi-output
squared error (the loss averaged over outputs, the gradient of their sum). The rows go through
the network ``block`` at a time, so memory stays bounded; each block's
output gradient is scaled by its share of the total weight before the
backward pass. The blocks form a fixed number of groups (set by the row
count, not the threads) that run in parallel, each summing its blocks'
gradients in order; the groups' sums are then added in group order, so the
result is the same on any number of threads.
Blocks whose weights sum to zero contribute nothing and are skipped.
Inference-mode forward pass: meant for Dense-only networks. Buffers are
feature-major, as in ``network.py``.
"""

import numba
import numpy as np

from .config import kernel, parallel_kernel
from .losses import loss_grad
from .network import INFERENCE, gather_block, load_input, network_backward, network_forward
from .optimizers import add_l2
from .reduce import ZERO, u64


@kernel
def fullbatch_group(g, n_groups, X, T, sw, block, total, spec, fspec, use_blas, params,
                    gacc2, gblk2, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, scale,
                    loss_code, lparts):
    """Group g's blocks (a fixed contiguous run of the ``block``-row blocks):
    their share of the loss into lparts[g], of the gradient into gacc2[g]."""
    n = X.shape[0]
    k = T.shape[1]
    weighted = sw.shape[0] > 0
    n_blocks = -(-n // block)
    G = gacc2[g]
    gblock = gblk2[g]
    acts = acts2[g]
    work = work2[g]
    d0 = d02[g]
    tbuf = tb2[g]
    wbuf = wb2[g]
    for j in range(G.shape[0]):
        G[j] = 0.0
    loss = 0.0
    for b in range((g * n_blocks) // n_groups, ((g + 1) * n_blocks) // n_groups):
        b0 = b * block
        rows = min(block, n - b0)
        bsum = 0.0
        if weighted:
            for i in range(rows):
                bsum += sw[u64(b0 + i)]
            if bsum == 0.0:
                continue
        else:
            bsum = float(rows)
        share = bsum / total
        load_input(spec, use_blas, X, b0, rows, acts)
        gather_block(T, b0, rows, tbuf)
        if weighted:
            for i in range(rows):
                wbuf[i] = sw[u64(b0 + i)]
        out_off = network_forward(spec, fspec, params, state, bnbuf, acts, work, rows,
                                  INFERENCE, use_blas, ZERO, ZERO, ZERO, rows)
        block_loss, _ = loss_grad(acts, out_off, tbuf, ZERO, wbuf, weighted, k, rows,
                                  loss_code, d0, ZERO)
        f = d0.dtype.type(share * scale)
        for i in range(rows * k):
            d0[i] *= f
        loss += block_loss * share
        network_backward(spec, fspec, params, gblock, bnbuf, acts, work, rows, use_blas,
                         d0, d12[g])
        for j in range(G.shape[0]):
            G[j] += gblock[j]
    lparts[g] = loss


@parallel_kernel
def groups_parallel(n_groups, X, T, sw, block, total, spec, fspec, use_blas, params, gacc2,
                    gblk2, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, scale, loss_code,
                    lparts):
    for g in numba.prange(n_groups):
        # prange counts in uint64, range in int64: one type, one specialisation
        fullbatch_group(np.int64(g), n_groups, X, T, sw, block, total, spec, fspec, use_blas,
                        params, gacc2, gblk2, state, bnbuf, acts2, work2, d02, d12, tb2, wb2,
                        scale, loss_code, lparts)
    return 0


@kernel
def fullbatch_loss_grad(X, T, sw, block, n_groups, parallel, spec, fspec, use_blas, params,
                        grads, gacc2, gblk2, state, bnbuf, acts2, work2, d02, d12, tb2, wb2,
                        lparts, wmask, l2, scale, loss_code):
    """The loss of X (n, in) against float targets T (n, k); grads written.

    The ``block``-row blocks are split into ``n_groups`` fixed runs (a
    function of n, never of the thread count); each group's blocks go through
    its own workspace row (acts2, work2, d02, d12, tb2, wb2: one row per
    group, each a ``network.train_batches`` workspace for ``block`` rows)
    into its own gradient gacc2[g] (gblk2[g] scratch); the groups' losses and
    gradients are then summed in group order. ``parallel`` runs the groups
    under prange, else in a plain loop (same results)."""
    n = X.shape[0]
    total = 0.0
    if sw.shape[0] > 0:
        for i in range(n):
            total += sw[i]
    else:
        total = float(n)
    if parallel:
        groups_parallel(n_groups, X, T, sw, block, total, spec, fspec, use_blas, params,
                        gacc2, gblk2, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, scale,
                        loss_code, lparts)
    else:
        for g in range(n_groups):
            fullbatch_group(g, n_groups, X, T, sw, block, total, spec, fspec, use_blas,
                            params, gacc2, gblk2, state, bnbuf, acts2, work2, d02, d12, tb2,
                            wb2, scale, loss_code, lparts)
    for j in range(grads.shape[0]):
        grads[j] = gacc2[0, j]
    loss = lparts[0]
    for g in range(1, n_groups):
        Gg = gacc2[g]
        for j in range(grads.shape[0]):
            grads[j] += Gg[j]
        loss += lparts[g]
    if l2 > 0.0:
        loss += add_l2(spec, params, grads, wmask, l2)
    return loss
