"""Synchronisation between the workers of one parallel region.

``chunked.train_workers`` runs one region per call in which each of its
``n`` workers (one per thread) goes through every batch, meeting the others
at a barrier between passes, instead of a fork-join per pass: on the 2-core
machine a fork-join costs about 3 us, and a small network's step has two
passes in 60 us (measured in ``chunked.py``: digits' fit 9% faster). The
waits spin (with x86's PAUSE hint), as OpenMP's own barriers do at first.

Numba has no atomics on the CPU, so three LLVM atomic instructions are
exposed as intrinsics (sequentially consistent, so whatever a worker wrote
before arriving at a barrier is visible to every worker that leaves it):
``atomic_add`` (returns the old value), ``atomic_load`` and ``atomic_cas``
(compare-and-swap; returns whether it swapped), on an int64 array element.

A barrier only works if every worker runs at the same time. Numba's OpenMP
and workqueue layers give each of ``n`` prange iterations over ``n`` threads
a thread of its own, but nothing promises it (TBB, ``OMP_DYNAMIC``, fewer
threads than asked). So the workers first ``check_in``: a worker that waits
too long poisons the arrival counter, atomically and only if not everyone
has arrived, and every worker then returns without touching anything; the
caller falls back to a fork-join per pass. Once all have checked in, all are
running, and the barriers need no time-out.
"""

import platform
import sys

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .config import kernel

POISON = np.int64(-(2 ** 62))      # an arrival counter that can never reach n again


def _element_pointer(context, builder, aryty, ary_value, index):
    ary = context.make_array(aryty)(context, builder, ary_value)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [index], wraparound=False)


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """arr[index] += value atomically; returns the old value (int64 arrays)."""
    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return types.int64(arr, index, value), codegen


@intrinsic
def atomic_load(typingctx, arr, index):
    """arr[index], read atomically (int64 arrays)."""
    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)
    return types.int64(arr, index), codegen


@intrinsic
def atomic_cas(typingctx, arr, index, expected, new):
    """arr[index] = new if it equals ``expected``, atomically; whether it did."""
    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(arr, index, expected, new), codegen


# a spin-wait hint: x86's PAUSE (on a core shared by two hardware threads the
# waiting one leaves the working one its resources); nothing elsewhere
_PAUSE = ("llvm.x86.sse2.pause" if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
          else "")


@intrinsic
def spin_pause(typingctx):
    """One spin-wait hint (see ``_PAUSE``)."""
    def codegen(context, builder, sig, args):
        if _PAUSE:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), []), _PAUSE)
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


# ... and, after SPINS_BEFORE_YIELD spins (tens of microseconds), the OS's
# sched_yield between spins where there is one: when the host runs both
# threads on one core for a while, a waiting worker that only spins holds
# the core the other one needs until its time slice ends (milliseconds)
_YIELD = "sched_yield" if sys.platform.startswith(("linux", "darwin")) else ""
SPINS_BEFORE_YIELD = 2048


@intrinsic
def os_yield(typingctx):
    """Give up the rest of this thread's time slice (see ``_YIELD``)."""
    def codegen(context, builder, sig, args):
        if _YIELD:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.IntType(32), []), _YIELD)
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@kernel
def relax(spins):
    """One wait step of a spin loop that has spun ``spins`` times so far."""
    spin_pause()
    if spins >= SPINS_BEFORE_YIELD:
        os_yield()


@kernel
def check_in(sync, slot, n_workers, max_spins):
    """Arrive at the region's start (counter ``sync[slot]``, zero before):
    True once all ``n_workers`` have arrived; False if they cannot all be
    running, for every worker alike (see the module notes)."""
    if atomic_add(sync, slot, np.int64(1)) < 0:
        return False                          # poisoned before this one arrived
    spins = np.int64(0)
    while True:
        seen = atomic_load(sync, slot)
        if seen >= n_workers:
            return True
        if seen < 0:
            return False
        relax(spins)
        spins += 1
        if spins >= max_spins and atomic_cas(sync, slot, seen, POISON):
            return False


@kernel
def barrier(sync, slot, target):
    """Arrive at a barrier: add one to ``sync[slot]`` and wait until it
    reaches ``target`` (the k-th barrier of n workers: k * n)."""
    atomic_add(sync, slot, np.int64(1))
    spins = np.int64(0)
    while atomic_load(sync, slot) < target:
        relax(spins)
        spins += 1
