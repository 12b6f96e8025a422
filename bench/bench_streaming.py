"""Streaming benchmark (a script, not a test): train and predict on a .npy
file larger than the budget, with bounded memory.

    python bench/bench_streaming.py                  # 20,000,000 x 25 float32 (2 GB)
    python bench/bench_streaming.py --rows 2000000   # a quicker look

Writes X (rows x 25 float32) and y (int8 labels) as .npy files in chunks
under --dir (default /tmp), then, for each batch size:

1. one epoch of a 25-32-2 network streamed from the memory-mapped file, with
   the file in the page cache: wall time, rows/s, and peak extra anonymous
   memory (RssAnon from /proc/self/status, sampled every 2 ms by a thread,
   over the baseline just before the call);
2. predict over the same file: time and peak extra RssAnon (the per-row
   predictions themselves, 1 byte a row here, are included);
3. the same epoch with X and y loaded in memory (same initial weights):
   rows/s; the streamed epoch's speed as a fraction of it (target >= 80%).

Memory targets: peak extra RssAnon < 512 MiB for both the epoch and predict.
The files are deleted at the end. Needs about 2.1 GB free under --dir for
the default size, and about 2.5 GB of RAM for the in-memory comparison.
"""

import argparse
import gc
import os
import shutil
import sys
import threading
import time

import numpy as np

import fastnn as fnn

D = 25
MIB = 2 ** 20


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakRss:
    """Peak RssAnon over the value at entry, sampled by a thread."""

    def __init__(self, every=0.002):
        self.every = every

    def __enter__(self):
        gc.collect()
        self.base = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.every)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())
        self.extra = self.peak - self.base
        return False


def write_data(directory, rows, chunk=1_000_000, seed=0):
    """X.npy (rows, 25) float32 and y.npy (rows,) int8, written chunk by chunk:
    y = [x . w + 0.5 * noise > 0] for a fixed w."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D).astype(np.float32)
    xp, yp = os.path.join(directory, "fastnn_bench_X.npy"), os.path.join(directory,
                                                                         "fastnn_bench_y.npy")
    with open(xp, "wb") as fx, open(yp, "wb") as fy:
        np.lib.format.write_array_header_1_0(
            fx, {"descr": "<f4", "fortran_order": False, "shape": (rows, D)})
        np.lib.format.write_array_header_1_0(
            fy, {"descr": "|i1", "fortran_order": False, "shape": (rows,)})
        for a in range(0, rows, chunk):
            m = min(chunk, rows - a)
            Xc = rng.normal(size=(m, D)).astype(np.float32)
            yc = (Xc @ w + 0.5 * rng.normal(size=m).astype(np.float32) > 0).astype(np.int8)
            fx.write(Xc.tobytes())
            fy.write(yc.tobytes())
    return xp, yp


def warm_page_cache(path, chunk=64 * MIB):
    with open(path, "rb") as f:
        while f.read(chunk):
            pass


def network(seed=0):
    model = fnn.Sequential([fnn.Dense(32, activation="relu"), fnn.Dense(2)], input_dim=D,
                           seed=seed)
    model.compile(loss="softmax_cross_entropy", optimizer=fnn.Adam(lr=1e-3))
    return model


def warm_up(xp, yp):
    """Compile (or load from cache) every kernel used, outside the timings."""
    X = np.load(xp, mmap_mode="r")[:5000]
    y = np.load(yp, mmap_mode="r")[:5000]
    model = network()
    for bs in (32, 256):
        model.fit(np.array(X), np.array(y), batch_size=bs, epochs=1)
        model.fit(X, y, batch_size=bs, epochs=1, block_rows=1000, window_blocks=2)
    model.predict(X)
    model.predict(np.array(X))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--memory-budget", type=int, default=None,
                    help="bytes (default: fastnn.data.DEFAULT_MEMORY_BUDGET)")
    ap.add_argument("--keep", action="store_true", help="keep the data files")
    ap.add_argument("--skip-in-memory", action="store_true")
    args = ap.parse_args(argv)

    need = args.rows * (D * 4 + 1) + 2 * MIB
    free = shutil.disk_usage(args.dir).free
    if free < need * 1.1:
        sys.exit(f"not enough disk under {args.dir}: {free / 2**30:.1f} GiB free, "
                 f"{need / 2**30:.1f} GiB needed")
    t0 = time.perf_counter()
    xp, yp = write_data(args.dir, args.rows)
    print(f"wrote {args.rows:,} x {D} float32 ({os.path.getsize(xp) / 2**30:.2f} GiB) and "
          f"int8 labels in {time.perf_counter() - t0:.1f} s to {args.dir}")
    budget = args.memory_budget or fnn.data.DEFAULT_MEMORY_BUDGET
    print(f"memory_budget {budget / MIB:.0f} MiB; page cache warmed before each timing")
    try:
        warm_up(xp, yp)
        results = []
        for bs in args.batch_sizes:
            warm_page_cache(xp)
            warm_page_cache(yp)
            Xm, ym = np.load(xp, mmap_mode="r"), np.load(yp, mmap_mode="r")
            model = network()
            with PeakRss() as mem:
                t = time.perf_counter()
                hist = model.fit(Xm, ym, batch_size=bs, epochs=1, memory_budget=budget)
                stream_s = time.perf_counter() - t
            line = dict(batch_size=bs, stream_s=stream_s, stream_mib=mem.extra / MIB,
                        stream_loss=hist.history["loss"][0],
                        stream_acc=hist.history["accuracy"][0])
            with PeakRss() as pmem:
                t = time.perf_counter()
                pred = model.predict(Xm, memory_budget=budget)
                line["predict_s"] = time.perf_counter() - t
            line["predict_mib"] = pmem.extra / MIB
            line["predict_acc"] = float((pred == ym).mean())
            del pred
            if not args.skip_in_memory:
                X, y = np.load(xp), np.load(yp)        # in memory (2 GB)
                ref = network()
                t = time.perf_counter()
                hist = ref.fit(X, y, batch_size=bs, epochs=1)
                line["memory_s"] = time.perf_counter() - t
                line["memory_acc"] = hist.history["accuracy"][0]
                line["memory_loss"] = hist.history["loss"][0]
                del X, y, ref
                gc.collect()
            results.append(line)
            report(line, args.rows)
    finally:
        if not args.keep:
            for p in (xp, yp):
                os.remove(p)
    return results


def report(r, rows):
    def rate(seconds):
        return f"{seconds:7.2f} s {rows / seconds / 1e6:6.2f} M rows/s"
    print(f"\nbatch_size {r['batch_size']}:")
    print(f"  streamed epoch  : {rate(r['stream_s'])}  peak extra RssAnon "
          f"{r['stream_mib']:6.1f} MiB (target < 512)  loss {r['stream_loss']:.6f}  "
          f"accuracy {r['stream_acc']:.4f}")
    print(f"  streamed predict: {rate(r['predict_s'])}  peak extra RssAnon "
          f"{r['predict_mib']:6.1f} MiB (target < 512; includes the "
          f"{rows / MIB:.0f} MiB of int8 predictions)")
    if "memory_s" in r:
        print(f"  in-memory epoch : {rate(r['memory_s'])}  loss {r['memory_loss']:.6f}  "
              f"accuracy {r['memory_acc']:.4f}")
        print(f"  streamed speed / in-memory speed: {r['memory_s'] / r['stream_s']:.2f}"
              "  (target >= 0.80)")


if __name__ == "__main__":
    main()
