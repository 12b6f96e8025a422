"""Thread policy. fastnn's own loops are serial (a parallel fork-join costs
more than a whole step of a small network, and Numba's spinning workers next to
OpenBLAS threads were measured 50-130x slower); only BLAS ``gemm`` on wide
layers uses threads. ``set_num_threads`` caps them; the default uses every
core for products big enough to pay for it and one thread otherwise. The
limit is applied with threadpoolctl around each fit/predict call and restored
afterwards, so nothing global is left changed."""

import contextlib
import os

from . import _validate

_num_threads = None
# below this many multiply-adds per batch product a second BLAS thread costs
# more in hand-off than it saves (measured on the 2-core machine)
_MIN_FLOPS_PER_THREAD = 2_000_000


def set_num_threads(n):
    """Cap the threads fastnn uses (None: the default policy)."""
    global _num_threads
    _num_threads = None if n is None else _validate.positive_int(n, "n")


def get_num_threads():
    """The cap set by ``set_num_threads`` (None when unset)."""
    return _num_threads


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # pragma: no cover - not Linux
        return os.cpu_count() or 1


def blas_threads(largest_product):
    """Threads for BLAS given the largest per-batch product (multiply-adds)."""
    if _num_threads is not None:
        return _num_threads
    if largest_product < _MIN_FLOPS_PER_THREAD:
        return 1
    return max(1, min(available_cores(), largest_product // _MIN_FLOPS_PER_THREAD))


@contextlib.contextmanager
def limit_blas(n):
    """Run the block with BLAS limited to ``n`` threads (None: leave it)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="blas"):
        yield
