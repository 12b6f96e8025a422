"""The one place that sets how every fastnn kernel is compiled.

* ``cache=True``: a new process loads machine code from ``__pycache__`` instead
  of recompiling (about 0.5 s instead of several seconds).
* ``nogil=True``: kernels release the GIL so a reader thread can prefetch data.
* ``error_model="numpy"``: division by zero gives inf/NaN instead of raising;
  Python's error model inserts checks that block loop vectorisation.
* ``fastmath={"contract"}``: only fused multiply-add contraction. Never
  ``nnan``/``ninf`` (NaN detection must keep working) and no ``reassoc``
  (sums must be reproducible and the polynomial approximations exact as
  written).
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
