"""Full-batch loss and gradient, for quasi-Newton solvers (L-BFGS).

``fullbatch_loss_grad`` returns, for the whole data set,

    loss  = scale * sum_i w_i l_i / sum_i w_i  +  0.5 * l2 * sum(W**2)
    grads = d loss / d params

where ``l_i`` is the loss of row i (``losses.loss_grad``), W runs over weight
matrices (``wmask``) and ``w`` is empty for unit weights. The rows go through
the network ``block`` at a time, so memory stays bounded; each block's
output gradient is scaled by its share of the total weight before the
backward pass, and block gradients are summed in order (deterministic).
Blocks whose weights sum to zero contribute nothing and are skipped.
Inference-mode forward pass: meant for Dense-only networks. Buffers are
feature-major, as in ``network.py``.
"""

from .config import kernel
from .losses import loss_grad
from .network import INFERENCE, gather_block, load_input, network_backward, network_forward
from .optimizers import add_l2
from .reduce import ZERO, u64


@kernel
def fullbatch_loss_grad(X, T, sw, block, spec, fspec, use_blas, params, grads, gblock,
                        state, bnbuf, acts, work, d0, d1, tbuf, wbuf, wmask, l2,
                        scale, loss_code):
    """The loss of X (n, in) against float targets T (n, k); grads written.

    ``gblock`` is a scratch buffer the size of ``grads``; ``acts``, ``work``,
    ``d0``, ``d1``, ``tbuf``, ``wbuf`` are the network workspace for ``block``
    rows (as in ``network.train_batches``)."""
    n = X.shape[0]
    k = T.shape[1]
    weighted = sw.shape[0] > 0
    total = 0.0
    if weighted:
        for i in range(n):
            total += sw[i]
    else:
        total = float(n)
    for j in range(grads.shape[0]):
        grads[j] = 0.0
    loss = 0.0
    for b0 in range(0, n, block):
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
        loss += block_loss * share * scale
        network_backward(spec, fspec, params, gblock, bnbuf, acts, work, rows, use_blas,
                         d0, d1)
        for j in range(grads.shape[0]):
            grads[j] += gblock[j]
    if l2 > 0.0:
        loss += add_l2(spec, params, grads, wmask, l2)
    return loss
