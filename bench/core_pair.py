"""What running two chunks at once costs each: work of fastnn's chunk shapes
timed alone on one thread, then two at once (a Numba ``prange`` over two,
BLAS pinned to one thread, as the parallel chunk pass runs).

* one-thread float32 GEMMs of chunk shapes: each core's GFLOP/s both ways;
* a whole training chunk (``kernels.chunked.chunk_step``: gather, forward,
  loss, backward) of the tabular estimator workload (50-64-64-1, batch 200
  split in two chunks of 100 rows): one chunk alone against
  ``chunks_parallel`` running both;
* W2's first layer (784 x 256, forward product and dW for a 128-row batch)
  split over the two cores by rows (what the chunk pass does: each core half
  the rows against the one shared W) and by columns (each core all the rows
  against its half of W's columns).

    python bench/core_pair.py [--repeats N]

Measured on the 2-vCPU machine of PERF-NOTES.md (session 8): large products
keep 0.96 of their speed, the small chunk products 0.81-0.89 (the fork-join,
about 1.1 us, is a sixth of a 7 us product), and a whole tabular chunk pair
took 1.1-1.7x one chunk alone across runs (51-82 against 47-51 us; the
spread is the shared host's): two cores give that pass 1.2-1.8x, not 2x.
Session 10: 47.4 against 52.1 us; W2's first layer split by rows took 575 us
a batch on one core's half alone and 604 with both at once, split by columns
554 and 562 (42 us a batch less, about 4% of W2's 2-thread batch, before
counting the chunk gradients the update pass no longer has to add); a second
run 584 / 630 against 560 / 602 (28 us less). Session 11 built that split
(``fastnn/kernels/colsplit.py``); this measurement stays as the products'
share of its gain.
"""

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numba
import numpy as np
import scipy.linalg  # noqa: F401  (load the BLAS numba's np.dot calls before pinning it)
from threadpoolctl import threadpool_limits

# (rows, n_in, n_out): a chunk's forward product rows x n_in @ n_in x n_out
SHAPES = ((100, 64, 64), (100, 64, 100), (64, 784, 256), (200, 200, 200))


@numba.njit(cache=False)
def _one(reps, A, B, C):
    for _ in range(reps):
        np.dot(A[0], B[0], C[0])
    return 0


@numba.njit(parallel=True, cache=False)
def _pair_once(A, B, C):
    for c in numba.prange(2):
        np.dot(A[c], B[c], C[c])
    return 0


@numba.njit(cache=False)
def _pair(reps, A, B, C):
    for _ in range(reps):
        _pair_once(A, B, C)
    return 0


def _best_seconds(alone, pair, reps, args, repeats):
    """Best seconds per call of ``alone(reps, *args)`` and ``pair(reps, *args)``
    over ``repeats`` alternated runs (each compiled first), BLAS on one thread."""
    best = [np.inf, np.inf]
    with threadpool_limits(1, user_api="blas"):
        alone(1, *args)
        pair(1, *args)
        for _ in range(repeats):
            for k, fn in enumerate((alone, pair)):
                t = time.perf_counter()
                fn(reps, *args)
                best[k] = min(best[k], (time.perf_counter() - t) / reps)
    return best[0], best[1]


def measure(shape, repeats=5, target_s=0.05):
    """(GFLOP/s of one GEMM alone, GFLOP/s per core of two at once)."""
    rows, n_in, n_out = shape
    rng = np.random.default_rng(0)
    A = rng.random((2, rows, n_in), dtype=np.float32)
    B = rng.random((2, n_in, n_out), dtype=np.float32)
    C = np.zeros((2, rows, n_out), np.float32)
    flops = 2.0 * rows * n_in * n_out
    reps = max(5, int(target_s * 1e11 / flops))
    alone, pair = _best_seconds(_one, _pair, reps, (A, B, C), repeats)
    return flops / alone / 1e9, flops / pair / 1e9


def chunk_pair(repeats=5, n=20_000, reps=400):
    """(us for one tabular chunk alone, us for the two chunks in parallel)."""
    import warnings

    import fastnn
    from fastnn.kernels.chunked import chunk_step, chunks_parallel
    from fastnn.trainer import _Buffers
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 50)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = fastnn.MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=1,
                                   random_state=0).fit(X[:1000], y[:1000])._net
    buf = _Buffers(net, 200)
    c = buf.chunks
    net._use_blas = net._blas_layers(buf.chunk_rows)
    T = np.ascontiguousarray(y[:, None], dtype=np.float32)
    sw = np.zeros(0, np.float32)
    order = rng.permutation(n).astype(np.int64)
    args = (2, 200, 200.0, 0, 1, X, T, sw, order, net._spec, net._fspec, net._use_blas,
            net._params.copy(), net._state, buf.bnbuf, c.acts2, c.work2, c.d02, c.d12,
            c.tb2, c.wb2, c.grads2, net._loss_code, c.closs, c.ccorr)

    # every scalar a variable of the trainer's types (int64, float64): a
    # literal would compile the kernels once more for Literal[int] arguments
    @numba.njit(cache=False)
    def alone(reps, nc, rows, wsum, seed, step, X, T, sw, order, spec, fspec, use_blas,
              params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
              closs, ccorr):
        for i in range(reps):
            chunk_step(np.int64(0), nc, X, T, sw, order, (i % 50) * rows, rows, spec, fspec,
                       use_blas, params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2,
                       grads2, loss_code, wsum, seed, step, closs, ccorr)
        return 0

    @numba.njit(cache=False)
    def pair(reps, nc, rows, wsum, seed, step, X, T, sw, order, spec, fspec, use_blas,
             params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2, loss_code,
             closs, ccorr):
        for i in range(reps):
            chunks_parallel(nc, X, T, sw, order, (i % 50) * rows, rows, spec, fspec, use_blas,
                            params, state, bnbuf, acts2, work2, d02, d12, tb2, wb2, grads2,
                            loss_code, wsum, seed, step, closs, ccorr)
        return 0

    t_alone, t_pair = _best_seconds(alone, pair, reps, args, repeats)
    return t_alone * 1e6, t_pair * 1e6


# W2's first layer on two cores: core c computes X[xi[c]] @ W[wi[c]] and its
# dW; by rows each core has its own X and both the one W (wi = 0, 0), by
# columns both the one X (xi = 0, 0) and each its own half of W
@numba.njit(cache=False)
def _layer_one(reps, xi, wi, X, W, D, Z, G):
    for _ in range(reps):
        np.dot(X[xi[0]], W[wi[0]], Z[0])
        np.dot(X[xi[0]].T, D[0], G[0])
    return 0


@numba.njit(parallel=True, cache=False)
def _layer_pair_once(xi, wi, X, W, D, Z, G):
    for c in numba.prange(2):
        np.dot(X[xi[c]], W[wi[c]], Z[c])
        np.dot(X[xi[c]].T, D[c], G[c])
    return 0


@numba.njit(cache=False)
def _layer_pair(reps, xi, wi, X, W, D, Z, G):
    for _ in range(reps):
        _layer_pair_once(xi, wi, X, W, D, Z, G)
    return 0


def split_pair(repeats=5, rows=128, n_in=784, n_out=256, reps=100):
    """W2's first layer (forward product and dW) for one batch on two cores,
    split two ways; us per batch: {split: (one core's half alone, both halves
    at once)}.

    * rows (what the chunk pass does): each core takes half the rows against
      the whole of W (one shared array), and writes its own dW;
    * columns: each core takes every row against its own half of W's
      columns (a contiguous block, as the first layer's transposed W stores
      it), so it reads half of W and writes half of dW, over all the rows."""
    rng = np.random.default_rng(0)
    f = np.float32
    W = rng.random((n_in, n_out), dtype=f)
    half = rows // 2
    Xr = rng.random((2, half, n_in), dtype=f)
    Dr = rng.random((2, half, n_out), dtype=f)
    shared, own = np.zeros(2, np.int64), np.arange(2, dtype=np.int64)
    by_rows = (own, shared, Xr, W[None], Dr,
               np.zeros((2, half, n_out), f), np.zeros((2, n_in, n_out), f))
    X = rng.random((rows, n_in), dtype=f)
    cols = n_out // 2
    by_cols = (shared, own, X[None],
               np.ascontiguousarray(W.reshape(n_in, 2, cols).transpose(1, 0, 2)),
               rng.random((2, rows, cols), dtype=f),
               np.zeros((2, rows, cols), f), np.zeros((2, n_in, cols), f))
    out = {}
    for name, args in (("rows", by_rows), ("columns", by_cols)):
        alone, pair = _best_seconds(_layer_one, _layer_pair, reps, args, repeats)
        out[name] = (alone * 1e6, pair * 1e6)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    print("| chunk GEMM (rows x in @ in x out) | alone GFLOP/s | per core, two at once | ratio |")
    print("|---|---:|---:|---:|")
    for shape in SHAPES:
        alone, pair = measure(shape, args.repeats)
        print(f"| {shape[0]} x {shape[1]} @ {shape[1]} x {shape[2]} | {alone:.0f} | "
              f"{pair:.0f} | {pair / alone:.2f} |")
    alone, pair = chunk_pair(args.repeats)
    print(f"\nTabular training chunk (100 rows of 50-64-64-1): {alone:.1f} us alone, "
          f"{pair:.1f} us for two at once ({pair / alone:.2f}x one: 1.00 would be "
          "perfect parallelism, 2.00 none)")
    print("\nW2's first layer (128 x 784 @ 784 x 256 forward and its dW), one batch split "
          "over two cores:\n")
    print("| split | one core's half alone, us | both halves at once, us |")
    print("|---|---:|---:|")
    for name, (alone, pair) in split_pair(args.repeats).items():
        print(f"| {name} | {alone:.0f} | {pair:.0f} |")


if __name__ == "__main__":
    main()
