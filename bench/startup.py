"""Workload 6, start-up: fresh processes that import fastnn, and that fit
workload 1 for one epoch with Numba's compile cache warm or empty.

``python -m bench.startup import|fit`` is the child: it prints one JSON line
with its own timings (``import_s``: ``import fastnn``; ``fit_s``: building the
model and its first one-epoch fit). :func:`run` starts a child and adds
``total_s``, the wall time of the whole process as a user would see it
(interpreter start-up included). The cold case gives the child an empty
``NUMBA_CACHE_DIR``, so every kernel it calls is compiled.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("import", "fit_warm", "fit_cold")


def run(case, cache_dir=None):
    """Start one child for ``case`` (see CASES); returns its timings (seconds)."""
    if case not in CASES:
        raise ValueError(f"case must be one of {CASES}, got {case!r}")
    env = dict(os.environ)
    own_dir = None
    if case == "fit_cold" and cache_dir is None:
        own_dir = cache_dir = tempfile.mkdtemp(prefix="fastnn-cold-cache-")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    cmd = [sys.executable, "-m", "bench.startup", "import" if case == "import" else "fit"]
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              check=False)
        total = time.perf_counter() - start
    finally:
        if own_dir is not None:
            import shutil
            shutil.rmtree(own_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"start-up child {cmd} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["total_s"] = total
    return out


def _child(what):
    t0 = time.perf_counter()
    import fastnn as fnn
    t1 = time.perf_counter()
    out = {"import_s": t1 - t0}
    if what == "fit":
        from bench.workloads import get
        wl = get("w1", smoke=False)
        d = wl.load()
        model = fnn.Sequential([fnn.Dense(3, activation="tanh"),
                                fnn.Dense(3, activation="softmax")], input_dim=2, seed=0)
        model.compile(loss="softmax_cross_entropy", optimizer=fnn.SGD(lr=wl.lr))
        t2 = time.perf_counter()
        hist = model.fit(d.X, d.y, batch_size=wl.batch_size, epochs=1)
        t3 = time.perf_counter()
        out.update(fit_s=t3 - t2, setup_s=t2 - t1, accuracy=hist.history["accuracy"][-1])
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("import", "fit"):
        sys.exit("usage: python -m bench.startup import|fit")
    _child(sys.argv[1])
