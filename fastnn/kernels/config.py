"""The one place that sets how every fastnn kernel is compiled.

* ``cache=True``: a new process loads machine code from ``__pycache__`` instead
  of recompiling (about 0.5 s instead of several seconds).
* ``nogil=True``: kernels release the GIL so a reader thread can prefetch data.
* ``error_model="numpy"``: division by zero gives inf/NaN instead of raising;
  Python's error model inserts checks that block loop vectorisation.
* ``fastmath={"contract"}``: only fused multiply-add contraction. Never
  ``nnan``/``ninf`` (NaN detection must keep working) and no ``reassoc``
  (the polynomial approximations must run exactly as written), except in
  ``reduction_kernel``.
"""

from numba import njit

JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy",
                   fastmath={"contract"})


def kernel(fn):
    """Decorate a module-level kernel with the project's one set of options."""
    return njit(**JIT_OPTIONS)(fn)


def parallel_kernel(fn):
    """``kernel`` with ``parallel=True``: for the few loops that run under
    ``prange`` (each iteration's work fixed by the problem, never by the
    thread count, so results do not depend on it)."""
    return njit(parallel=True, **JIT_OPTIONS)(fn)


def reduction_kernel(fn):
    """``kernel`` for the sums of ``reduce.py`` alone, with ``reassoc``: a
    plain ``s += a[i]`` loop then vectorises (LLVM's loop vectoriser needs
    reassociation for a reduction, and Numba leaves the SLP vectoriser off,
    so a hand-interleaved 8-lane loop stays scalar: measured 3.6-7 elements
    per ns against 14-28). The order is LLVM's, fixed when the kernel is
    compiled for this machine (vector lanes, then a fixed tree): it depends
    on the data and the length only, never on threads. Keep these functions
    leaf loops with nothing else in them to reassociate."""
    return njit(**dict(JIT_OPTIONS, fastmath={"contract", "reassoc"}))(fn)
