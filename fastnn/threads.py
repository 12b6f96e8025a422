"""Thread policy.

Results must be bitwise identical whatever the number of threads, and on
small shared machines a second thread is often a loss. Measured here:

* OpenBLAS's threaded gemm gives different bits with 1 and 2 threads for many
  shapes (MNIST's 784x256 forward product among them), so inside fastnn BLAS
  always runs on one thread; fastnn pins it for the duration of each
  fit/predict call with threadpoolctl and restores it afterwards.
* A Numba parallel fork-join costs 2-3 us (milliseconds in bad times), more
  than a whole step of a small network, and Numba's spinning workers next to
  OpenBLAS threads made an MNIST epoch 50-130x slower.

So BLAS never gets more than one thread. Training goes parallel by data
instead: a batch big enough is split into row chunks fixed by the network and
the batch size (``Sequential._chunks``, ``kernels/chunked.py``), each chunk's
forward and backward runs on a Numba thread with single-thread BLAS, and the
chunk gradients are summed in chunk order: the same arithmetic on any number
of threads, so the same bits. Within a compiled call the threads stay in
one parallel region and meet at barriers between passes (``kernels/sync.py``)
rather than forking and joining per pass. Small batches stay whole, on one
thread (a fork-join would cost more than the work). Numba's pool is used only from one
Python thread at a time and never in a forked child (GNU OpenMP is not
fork-safe); otherwise the same chunks run in a plain loop, same results.

Inference (predict, predict_proba, evaluate, validation) splits the rows
into fixed blocks of 512 and hands contiguous runs of blocks to worker
threads; each block is computed the same way whichever thread runs it, so
results do not depend on the thread count. Coarse blocks mean a slow second
core costs at most its share of the work (no fine-grained hand-offs).
``set_num_threads(n)`` caps the threads of both training and inference; the
default is the available cores.
"""

import contextlib
import os
import threading
import time

from . import _validate

_num_threads = None
_controller = None


def set_num_threads(n):
    """Cap the threads fastnn may use (None: the default policy)."""
    global _num_threads
    _num_threads = None if n is None else _validate.positive_int(n, "n")


def get_num_threads():
    """The cap set by ``set_num_threads`` (None when unset)."""
    return _num_threads


# each inference thread gets at least this many 512-row blocks, or fewer threads
MIN_BLOCKS_PER_THREAD = 4


def inference_threads(n_blocks):
    """Worker threads for inference over ``n_blocks`` row blocks."""
    cap = _num_threads if _num_threads is not None else available_cores()
    return max(1, min(cap, n_blocks // MIN_BLOCKS_PER_THREAD))


def in_block_runs(run, n, block):
    """Call run(start, stop) over rows 0..n in contiguous runs of whole
    blocks of ``block`` rows (the last block may be short), one run per
    inference thread (``inference_threads``); returns when all are done. The
    kernels release the GIL, and each block is computed the same way by any
    thread, so results do not depend on the number of threads."""
    n_blocks = -(-n // block)
    threads = inference_threads(n_blocks)
    if threads <= 1:
        run(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor
    step = -(-n_blocks // threads) * block
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(run, a, min(n, a + step)) for a in range(0, n, step)]:
            f.result()


_pool_lock = threading.Lock()     # one Python thread in Numba's pool at a time
_forked_child = False


def _after_fork_in_child():
    global _forked_child, _pool_lock
    _forked_child = True
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):     # Unix; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def training_threads(n_chunks):
    """Threads for training batches split into ``n_chunks`` chunks."""
    import numba
    cap = _num_threads if _num_threads is not None else available_cores()
    return max(1, min(cap, n_chunks, numba.config.NUMBA_NUM_THREADS))


def _median(values):
    return sorted(values)[len(values) // 2]


class PathChooser:
    """Picks, call by call, between Numba's thread pool and a plain loop for a
    kernel that gives the same bits either way (``kernels/chunked.py``,
    ``kernels/fullbatch.py``), so the choice may follow speed alone.

    The pool first. The loop is tried once the pool has SAMPLES timings, then
    after PROBE_EVERY calls and at doubling intervals (up to
    MAX_PROBE_EVERY) while it loses (at once MAX_PROBE_EVERY when a try of
    the loop loses by SLOWDOWN or more), at once when the path in use suddenly
    runs SLOWDOWN times slower than its median, and again at once while a try
    wins; with the loop in use, the pool is also tried by the clock (see
    ``_pool_due``); once both have SAMPLES timings, the lower median time per row
    decides. Medians, because times on a loaded machine
    are bimodal; the first call (compilation or a cache load) is not timed.
    Measured: on the 2-core machine with a busy process on one core, the pool
    made a W4 batch-200 epoch 2-4x slower than one thread; the chooser falls
    back to the loop there by itself; on a quiet machine the tries cost one
    call early, then one in hundreds.

    Other libraries' idle threads keep spinning for a while after their last
    parallel call (OpenBLAS's about 0.1 s) and take a core meanwhile:
    measured, right after three 2-thread NumPy products the pool took 21 ms
    where the loop took 11 ms, and 7 ms against 11 ms 0.1 s later; a model
    fitted after such products was left on the loop, and its next fits
    stayed there (400 ms an epoch against 215 ms). So timings from the first
    SETTLE_S seconds of a fit (``begin``) count only until later ones come:
    if they left the loop in use, it is timed again from scratch after them,
    the pool tried next."""

    SAMPLES = 3
    PROBE_EVERY = 32
    MAX_PROBE_EVERY = 1024
    SLOWDOWN = 1.5
    SETTLE_S = 0.15
    POOL_RETRY_S = 0.25
    POOL_RETRY_COST = 20

    def __init__(self):
        self.samples = {True: [], False: []}
        self.calls = 0
        self.best = True
        self.interval = self.PROBE_EVERY // 2
        self.next_probe = 2 + self.SAMPLES       # after the untimed call and SAMPLES timed
        self.settle_end = 0.0
        self.unsettled = False                   # timings from before settle_end
        self.pool_tried = time.perf_counter()    # when the pool last ran a call
        self.pool_cost = 0.0                     # and how long that call took

    def begin(self):
        """A fit starts (see the class notes on SETTLE_S)."""
        self.settle_end = time.perf_counter() + self.SETTLE_S
        self.unsettled = False

    def _settle(self, started):
        """Timings of calls started before settle_end are provisional: at the
        first call after it, a loop they chose is timed again from scratch."""
        if started < self.settle_end:
            self.unsettled = True
        elif self.unsettled:
            self.unsettled = False
            if not self.best:
                self.samples = {True: [], False: []}
                self.interval = self.PROBE_EVERY // 2
                self.next_probe = self.calls + 1 + self.SAMPLES

    def probing(self):
        """Whether the next call tries the path that is not the best (callers
        that can size their calls keep such a call short)."""
        return self.calls + 1 >= self.next_probe or self._pool_due()

    def _pool_due(self):
        """On the loop, the pool is tried again at least every POOL_RETRY_S
        seconds, not only every so many calls (but no sooner than
        POOL_RETRY_COST times as long as its last try took, so these tries of
        a pool that has turned very slow cost at most about 5%). A spell in
        which the second core is busy elsewhere puts the loop in use, and
        short calls (one epoch per fit, a few milliseconds a call) would
        otherwise keep it there long after. Measured in bench/compare.py's W4
        batch 200, five rounds of one-epoch fits: the default policy stayed
        on the loop from round 2 on (55 ms an epoch) while the pool ran its
        epochs in 34-38 ms."""
        if self.best:
            return False
        wait = max(self.POOL_RETRY_S, self.POOL_RETRY_COST * self.pool_cost)
        return time.perf_counter() - self.pool_tried >= wait

    def choose(self):
        """True: run this call on the pool; False: in a plain loop."""
        self.calls += 1
        if self.calls >= self.next_probe:
            self.interval = min(2 * self.interval, self.MAX_PROBE_EVERY)
            self.next_probe = self.calls + self.interval
            return not self.best
        if self._pool_due():
            self.pool_tried = time.perf_counter()
            return True
        return self.best

    @contextlib.contextmanager
    def call(self, n_chunks, rows):
        """Run one kernel call over ``rows`` rows in ``n_chunks`` chunks:
        yields whether to use the pool (see ``chunk_threads``) and times it."""
        with chunk_threads(n_chunks, self.choose()) as parallel:
            t0 = time.perf_counter()
            yield parallel
            self.record(parallel, time.perf_counter() - t0, rows)

    def record(self, parallel, seconds, rows):
        """The call just made took ``seconds`` for ``rows`` rows."""
        if parallel:
            self.pool_tried = time.perf_counter()
            self.pool_cost = seconds
        if self.calls <= 1:
            return
        self._settle(time.perf_counter() - seconds)
        rate = seconds / max(rows, 1)
        mine = self.samples[self.best]
        if parallel == self.best:
            if len(mine) == self.SAMPLES and rate > self.SLOWDOWN * _median(mine):
                self.next_probe = self.calls + 1         # slowed down: look at the other
        elif not mine or rate < _median(mine):
            self.next_probe = self.calls + 1             # a try won: time it again
        kept = self.samples[parallel]
        kept.append(rate)
        del kept[:-self.SAMPLES]
        if all(len(v) == self.SAMPLES for v in self.samples.values()):
            faster = _median(self.samples[True]) <= _median(self.samples[False])
            if faster != self.best:
                self.best = faster
                self.interval = self.PROBE_EVERY
                self.next_probe = self.calls + self.interval
                return
        pool = self.samples[True]
        if (self.best and not parallel and len(pool) == self.SAMPLES
                and rate >= self.SLOWDOWN * _median(pool)):
            # a try of the loop lost by SLOWDOWN or more: the loop can only win
            # after the pool slows down that much, which calls for a try by
            # itself, so periodic tries go to their longest interval (measured:
            # on W2, whose calls take 30 ms, the tries at 32, 64, ... calls cost
            # 3% of a 5-epoch fit)
            self.interval = self.MAX_PROBE_EVERY
            self.next_probe = self.calls + self.interval


@contextlib.contextmanager
def chunk_threads(n_chunks, want=True):
    """Yield whether the chunked training kernel may run its passes on Numba's
    thread pool (then sized for ``n_chunks``, and restored afterwards): not
    when ``want`` is false, one thread is allowed, this is a forked child, or
    another Python thread is in the pool."""
    n = training_threads(n_chunks)
    if not want or n < 2 or _forked_child or not _pool_lock.acquire(blocking=False):
        yield False
        return
    import numba
    old = numba.get_num_threads()
    try:
        if old != n:
            numba.set_num_threads(n)
        yield True
    finally:
        if old != n:
            numba.set_num_threads(old)
        _pool_lock.release()


# kernels.chunked.train_workers keeps its workers in one parallel region and
# needs them all running at once; a worker that waits CHECK_IN_SPINS spins
# (about 40 ms, yields included) for the others at the start gives up, and
# the call runs a fork-join per pass instead (train_chunked). After
# MAX_CHECK_IN_FAILURES failures in a row (a threading layer that does not
# give each worker its own thread) the process stops trying.
CHECK_IN_SPINS = 2 ** 16
MAX_CHECK_IN_FAILURES = 3
_check_in_failures = 0


def workers_usable():
    """Whether training calls may try ``train_workers``."""
    return _check_in_failures < MAX_CHECK_IN_FAILURES


def record_check_in(ok):
    """A ``train_workers`` call checked its workers in (``ok``) or not."""
    global _check_in_failures
    _check_in_failures = 0 if ok else _check_in_failures + 1


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries, scipy's included (the one
    ``np.dot`` inside Numba calls), loaded once."""
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS first)
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_threaded_blas(active=True):
    """Run the block with every BLAS library on one thread, then restore."""
    if not active:
        yield
        return
    controller = _blas_controller()
    if all(lib.num_threads == 1 for lib in controller.select(user_api="blas").lib_controllers):
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


# names used by the trainer and the estimators: BLAS always gets one thread
def blas_threads(largest_product):
    """Threads for BLAS inside fastnn: always 1 (see the module docstring)."""
    return 1


def limit_blas(n):
    """``single_threaded_blas`` when ``n`` is not None."""
    return single_threaded_blas(n is not None)
