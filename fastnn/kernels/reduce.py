"""Sums over the batch in a fixed order that vectorises.

Feature-major buffers put a layer's batch in one contiguous run, so column
sums (bias and weight gradients, BatchNorm statistics, the batch loss, the
L2 term) are sums over a contiguous run. A plain loop ``s += a[i]`` vectorises
only with reassociation, allowed here and nowhere else
(``config.reduction_kernel``): LLVM then keeps the partial sums in vector
registers (512-bit ones on this AVX-512 machine) and adds them in a fixed
tree at the end. The order is chosen once, when the kernel is compiled for the machine;
it depends on the data and the length only, never on the number of threads.

(These were hand-interleaved 8-lane loops, meant for the SLP vectoriser,
which Numba leaves off: they ran scalar, 3.6-7 elements per ns against 14-28
now; the L2 term over 7,424 weights took 2.0 us a batch, as long as the whole
Adam update.)
"""

import numpy as np

from .config import kernel, reduction_kernel

# Offsets handed from one kernel to another must be typed, never literal: a
# literal ``0`` would compile a separate specialisation of the callee.
ZERO = np.int64(0)

# Index flat buffers as ``buf[u64(offset + i)]``: with a signed index Numba
# adds a negative-index wraparound test to every access, which stops LLVM
# vectorising the loop (measured 4-10x slower on these loops).
u64 = np.uint64


@reduction_kernel
def lane_sum(a, off, n):
    """sum(a[off:off+n]) in the vectorised order (see the module notes)."""
    s = a.dtype.type(0.0)
    for i in range(n):
        s += a[u64(off + i)]
    return s


@reduction_kernel
def lane_dot(a, ao, b, bo, n):
    """sum(a[ao:ao+n] * b[bo:bo+n]) in the vectorised order."""
    s = a.dtype.type(0.0)
    for i in range(n):
        s += a[u64(ao + i)] * b[u64(bo + i)]
    return s


@kernel
def exponent_max(u, mask):
    """max over i of u[i] & mask, for the bits ``u`` (uint32 or uint64) of a
    float array and ``mask`` its exponent field: equal to ``mask`` exactly
    when some entry is NaN or infinite (all exponent bits set). An integer
    max vectorises in any order, so this runs at memory speed (measured on
    60,000 x 784 float32: 5.9 ms, against 7.6 ms for numpy's sum)."""
    m = u.dtype.type(0)
    for i in range(u.shape[0]):
        m = max(m, u[u64(i)] & mask)
    return m


@kernel
def narrow_finite(x, out):
    """out[i] = x[i] rounded to out's dtype (float64 to float32), for 1-D
    contiguous x and out; returns whether every rounded value is finite (a
    NaN or infinity in x, or a finite x[i] beyond float32's range, makes one
    that is not). One pass over memory where a conversion and a separate
    check take two (measured on 100,000 x 50: 2.2 ms against 3.1 ms for
    scikit-learn's ``check_array``). ``w - w`` is 0 exactly for finite w
    (the options never let LLVM assume finiteness)."""
    bad = False
    for i in range(x.shape[0]):
        w = out.dtype.type(x[u64(i)])
        out[u64(i)] = w
        bad |= (w - w) != 0
    return not bad
