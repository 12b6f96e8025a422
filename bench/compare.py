"""Compare fastnn with the NumPy reference, scikit-learn, PyTorch and JAX in one
run, interleaved, and print a markdown report.

    python bench/compare.py [--smoke] [--rounds N] [--json out.json]
                            [--workloads w1,w2] [--contenders fastnn,torch]

For each workload every contender at every thread setting (1 or 2; fastnn also
its default) is set up first (compilation and one warm-up epoch, untimed), timed
for one calibration epoch, trained to ``--eval-epochs`` epochs and scored on
held-out rows. Then, round by round, each runs epochs back to back for about
0.25 s (the mean per epoch counts), in an order that rotates every round, so a
slow stretch of the shared machine hits all of them alike. A contender's time is
its median over rounds at its best thread setting; its ratio to fastnn is the
median of the per-round ratios (its time / fastnn's time in the same round).
Settings more than ``--prune`` times slower than the same contender's fastest,
in its warm-up (when nothing compiles) or calibration epoch, are dropped
(reported).

Workload 2 also times its matrix products alone (the GEMM floor) and a large
sgemm (the machine's peak) in the same rounds; workload 6 times fresh
processes (``bench/startup.py``).
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):          # run as a script: python bench/compare.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import contenders, startup, workloads  # noqa: E402

BASE = "fastnn"
BLOCK_S = 0.25       # per round, each entry runs back-to-back epochs for about this long
MAX_REPS = 100
# Pause before each timed block: a thread pool keeps spinning after its last
# job (OpenBLAS about 0.1 s, OpenMP a while too) and steals a core from
# whatever runs next; measured: scikit-learn on 2 BLAS threads right before
# fastnn's digits fit made that fit 2x slower. Each contender starts idle.
SETTLE_S = 0.3
REWARM_S = 0.05      # epochs shorter than this get an untimed epoch before each block


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _label(name, threads):
    return f"{name}[{'default' if threads is None else f'{threads}t'}]"


def _threads_text(threads):
    return "default" if threads is None else str(threads)


# ------------------------------------------------------------- measuring

def run_workload(wl, entries, rounds, prune, eval_epochs):
    """Set up every entry, score it after ``eval_epochs`` epochs, then time
    ``rounds`` interleaved rounds; returns the raw per-round times (seconds per
    epoch, None where pruned), scores and the instances."""
    insts, skipped = [], {}
    for cls, threads in entries:
        reason = cls.unavailable()
        if reason:
            skipped[cls.name] = reason
            continue
        _log(f"  setup {_label(cls.name, threads)}")
        insts.append(cls(threads).setup(wl))
    if wl.name == "w2":
        insts += [contenders.GemmFloor(t).setup(wl) for t in (1, 2)]
    pruned = {}
    active = insts
    if prune:
        # a warm-up epoch without compilation already shows a hopeless setting,
        # but a library's first one also pays its one-time start (torch: seconds)
        later = {c.label for i, c in enumerate(insts)
                 if any(o.name == c.name for o in insts[:i])}
        active = _prune(active, {c.label: c.warmup_s for c in insts if not c.compiles},
                        prune, pruned, "its warm-up epoch", candidates=later)
    calib = {c.label: _time_block(c, 1, False) for c in active}
    if prune:
        active = _prune(active, calib, prune, pruned, "a calibration epoch")
    eval_epochs = eval_epochs or wl.eval_epochs
    scores = {c.label: _score(c, eval_epochs) for c in active}
    reps = {lab: max(1, min(MAX_REPS, round(BLOCK_S / sec))) for lab, sec in calib.items()}
    times = {c.label: [None] * rounds for c in insts}
    peaks = {1: [], 2: []}
    for r in range(rounds):
        k = r % len(active)
        order = active[k:] + active[:k]
        if r % 2:
            order.reverse()
        for c in order:
            times[c.label][r] = _time_block(c, reps[c.label], calib[c.label] < REWARM_S)
        if wl.name == "w2":
            for t in (1, 2):
                peaks[t].append(contenders.sgemm_gflops(t))
        _log(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{c.label} {_fmt_time(times[c.label][r])}" for c in active))
    return dict(insts=insts, times=times, scores=scores, peaks=peaks, pruned=pruned,
                skipped=skipped, reps=reps, eval_epochs=eval_epochs)


def _time_block(c, reps, rewarm):
    """Seconds per epoch over ``reps`` back-to-back epochs, after a pause of
    SETTLE_S; with ``rewarm`` an untimed epoch first (a short epoch right after
    another contender runs on cold caches: 0.2 ms became 0.4-0.8 ms in W3,
    which training never sees)."""
    time.sleep(SETTLE_S)
    if rewarm:
        c.run_epoch()
    start = time.perf_counter()
    for _ in range(reps):
        c.run_epoch()
    return (time.perf_counter() - start) / reps


def _score(c, epochs):
    """Mean held-out (loss, accuracy) after epochs max(2, epochs - 2) .. epochs
    (two are done: warm-up and calibration): one epoch's score swings by
    +-0.02 under Adam on W2, for every contender alike."""
    if c.workload.inference:
        return c.evaluate()
    done, seen = 2, []
    for target in range(max(2, epochs - 2), max(2, epochs) + 1):
        while done < target:
            c.run_epoch()
            done += 1
        seen.append(c.evaluate())
    return tuple(float(np.mean(v)) for v in zip(*seen))


def _prune(active, seconds, factor, pruned, when, candidates=None):
    """Drop settings slower than ``factor`` x the same contender's fastest
    (``seconds``: label -> one epoch's time; entries without one stay, and so
    do those not in ``candidates`` when given); fastnn's default and 1-thread
    settings always stay. Records {label: (times slower, when)} in ``pruned``."""
    keep = []
    for c in active:
        peers = [seconds[o.label] for o in active if o.name == c.name and o.label in seconds]
        protected = (c.name == BASE and c.threads in (None, 1)) or (
            candidates is not None and c.label not in candidates)
        slow = seconds[c.label] / min(peers) if c.label in seconds else 1.0
        if slow > factor and not protected:
            pruned[c.label] = (slow, when)
        else:
            keep.append(c)
    return keep


def _paired(times, a, b):
    """Median over rounds of times[a][r] / times[b][r] (rounds both ran)."""
    ratios = [x / y for x, y in zip(times[a], times[b]) if x is not None and y is not None]
    return statistics.median(ratios) if ratios else float("nan")


def summarise(wl, raw):
    """Best setting, median time, paired ratio and score per contender."""
    times = raw["times"]
    complete = {lab: ts for lab, ts in times.items() if None not in ts}
    by_name = {}
    for c in raw["insts"]:
        if c.label in complete:
            by_name.setdefault(c.name, []).append(c)
    best = {name: min(cs, key=lambda c: statistics.median(times[c.label]))
            for name, cs in by_name.items()}
    base = best[BASE].label
    rows = []
    for name, c in best.items():
        if name == contenders.GemmFloor.name:
            continue
        loss, acc = raw["scores"][c.label]
        rows.append(dict(contender=name, threads=c.threads, label=c.label,
                         median_s=statistics.median(times[c.label]),
                         ratio=_paired(times, c.label, base), loss=loss, accuracy=acc))
    out = dict(workload=wl.name, title=wl.title, task=wl.task, n_test=wl.n_test,
               eval_epochs=raw["eval_epochs"], inference=wl.inference,
               rows=rows, pruned=raw["pruned"], skipped=raw["skipped"], reps=raw["reps"],
               default_vs_1=_paired(times, _label(BASE, None), _label(BASE, 1)),
               times=times)
    if contenders.GemmFloor.name in best:
        floor = best[contenders.GemmFloor.name]
        peak = {t: statistics.median(v) for t, v in raw["peaks"].items() if v}
        flops = wl.epoch_flops()
        fast_s = statistics.median(times[base])
        one = _label(contenders.GemmFloor.name, 1)
        out["gemm"] = dict(floor_s=statistics.median(times[floor.label]),
                           floor_threads=floor.threads,
                           fastnn_over_floor=_paired(times, base, floor.label),
                           floor1_s=statistics.median(times[one]) if one in complete
                           else float("nan"),
                           # fastnn held to one thread against the 1-thread floor
                           fastnn_over_floor1=_paired(times, _label(BASE, 1), one)
                           if one in complete and _label(BASE, 1) in complete else float("nan"),
                           gflop_per_epoch=flops / 1e9,
                           fastnn_gflops=flops / fast_s / 1e9,
                           floor_gflops=flops / statistics.median(times[floor.label]) / 1e9,
                           peak_gflops=peak,
                           peak_fraction=flops / fast_s / 1e9 / max(peak.values()))
    return out


def run_startup(rounds, cold_rounds):
    """Interleaved fresh processes: import alone, warm-cache fit, cold-cache fit."""
    _log("w6 start-up")
    startup.run("fit_warm")                     # makes sure the cache is warm
    res = {case: [] for case in startup.CASES}
    for r in range(max(rounds, cold_rounds)):
        cases = [c for c in ("import", "fit_warm") if r < rounds]
        if r < cold_rounds:
            cases.append("fit_cold")
        for case in (cases if r % 2 == 0 else cases[::-1]):
            res[case].append(startup.run(case))
        _log(f"  round {r + 1}: " + ", ".join(
            f"{c} {res[c][-1]['total_s']:.2f}s" for c in cases))
    return {case: {key: statistics.median(v[key] for v in vals) for key in vals[0]
                   if key != "accuracy"}
            for case, vals in res.items() if vals}


# -------------------------------------------------------------- reporting

def _fmt_time(s):
    if s is None or not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _fmt_ratio(x):
    if not math.isfinite(x):
        return "-"
    return f"{x:.3g}×" if x < 100 else f"{x:.0f}×"


def _score_text(task, acc):
    if not math.isfinite(acc):
        return "-"
    return f"R² {acc:.3f}" if task == "regression" else f"{acc:.4f}"


def _accuracy_flag(summary, row, base_row):
    """'!' when a contender's score differs from fastnn's by more than noise:
    3 binomial standard errors on the held-out rows, and at least 0.02 (the
    spread that different shuffles alone give after a few epochs)."""
    a, b = row["accuracy"], base_row["accuracy"]
    if not (math.isfinite(a) and math.isfinite(b)):
        return ""
    if summary["task"] == "regression":
        tol = 0.02
    else:
        tol = max(0.02, 3 * math.sqrt(max(b * (1 - b), 1e-4) / summary["n_test"]))
    return " !" if abs(a - b) > tol else ""


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib import metadata
    versions = {}
    for dist in ("numpy", "numba", "scikit-learn", "torch", "jax", "fastnn-mlp"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=startup.ROOT, check=False).stdout.strip()
    except OSError:
        commit = ""
    return dict(cpu=cpu, cores=len(os.sched_getaffinity(0)), python=platform.python_version(),
                versions=versions, commit=commit,
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))


def report(meta, summaries, start, args):
    v = meta["versions"]
    lines = [f"### fastnn vs. the NumPy reference, scikit-learn, PyTorch and JAX "
             f"({meta['date']})", "",
             f"`{meta['command']}` on {meta['cpu']}, {meta['cores']} cores; Python "
             f"{meta['python']}, " + ", ".join(f"{k} {val}" for k, val in v.items())
             + (f" (commit {meta['commit']})" if meta["commit"] else "") + ".", "",
             f"Time per epoch (W5: per `predict_proba` over the rows): median over "
             f"{args.rounds} interleaved rounds; in each round a contender runs epochs back "
             f"to back for about {BLOCK_S} s (short ones after an untimed re-warm epoch) "
             "and the mean counts. **× fastnn** is the median of the per-round ratios "
             "contender time / fastnn time (above 1: slower than fastnn). Each contender "
             "at its best thread setting in this run. Accuracy (R² for regression) and "
             "loss on held-out rows, the mean of the scores after the last three of "
             "the epochs in the Epochs column (every contender from the same initial "
             "weights); ! marks a score off fastnn's by more than noise.", "",
             "| Workload | Contender | Threads | Time | × fastnn | Accuracy | Loss | Epochs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        base_row = next(r for r in s["rows"] if r["contender"] == BASE)
        for i, row in enumerate(s["rows"]):
            lines.append(
                f"| {s['title'] if i == 0 else ''} | {row['contender']} | "
                f"{_threads_text(row['threads'])} | {_fmt_time(row['median_s'])} | "
                f"{_fmt_ratio(row['ratio'])} | "
                f"{_score_text(s['task'], row['accuracy'])}{_accuracy_flag(s, row, base_row)}"
                f" | {row['loss']:.4g} | {'-' if s['inference'] else s['eval_epochs']} |")
    notes = []
    for s in summaries:
        for lab, (slow, when) in s["pruned"].items():
            notes.append(f"{s['workload']}: {lab} dropped after {when} ({slow:.1f}× slower "
                         "than the same contender's fastest setting)")
    skipped = {n: r for s in summaries for n, r in s["skipped"].items()}
    notes += [f"{n} skipped: {r}" for n, r in skipped.items()]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    for s in summaries:
        g = s.get("gemm")
        if g:
            peak = ", ".join(f"{val:.0f} GFLOP/s on {t} thread(s)"
                             for t, val in g["peak_gflops"].items())
            lines += ["", f"**{s['workload']} GEMM floor** (the epoch's {g['gflop_per_epoch']:.1f} "
                      f"GFLOP of matrix products alone, NumPy BLAS, same rounds): "
                      f"{_fmt_time(g['floor_s'])} on {g['floor_threads']} thread(s) "
                      f"({g['floor_gflops']:.0f} GFLOP/s). fastnn's epoch is "
                      f"{g['fastnn_over_floor']:.2f}× the floor; on one thread fastnn is "
                      f"{g['fastnn_over_floor1']:.2f}× the 1-thread floor "
                      f"({_fmt_time(g['floor1_s'])}): {g['fastnn_gflops']:.0f} GFLOP/s"
                      f" = {100 * g['peak_fraction']:.0f}% of the measured sgemm peak "
                      f"({peak})."]
    lines += ["", "| Workload | fastnn default threads / fastnn 1 thread |", "|---|---:|"]
    lines += [f"| {s['title']} | {_fmt_ratio(s['default_vs_1'])} |" for s in summaries]
    if start:
        lines += ["", "| W6 start-up (fresh process) | Wall time | `import fastnn` | "
                  "First fit (1 epoch) |", "|---|---:|---:|---:|"]
        names = {"import": "`import fastnn`", "fit_warm": "fit W1 one epoch, cache warm",
                 "fit_cold": "fit W1 one epoch, cache empty"}
        for case, m in start.items():
            lines.append(f"| {names[case]} | {_fmt_time(m['total_s'])} | "
                         f"{_fmt_time(m['import_s'])} | {_fmt_time(m.get('fit_s'))} |")
    lines += ["", "Targets (issue #3)" + (" -- smoke sizes, not comparable with the targets"
                                          if args.smoke else "") + ":", ""]
    lines += [f"- {t}" for t in targets(summaries, start)]
    return "\n".join(lines)


def targets(summaries, start):
    """One line per target of the issue: measured value, target, met or not."""
    by = {s["workload"]: s for s in summaries}

    def ratio(w, name):
        s = by.get(w)
        row = s and next((r for r in s["rows"] if r["contender"] == name), None)
        return row["ratio"] if row else None

    def line(text, value, goal, higher=True):
        if value is None or not math.isfinite(value):
            return f"{text}: not measured in this run (target {goal})"
        ok = value >= goal if higher else value <= goal
        return (f"{text}: {value:.3g} (target {'≥' if higher else '≤'} {goal}) — "
                f"{'met' if ok else 'MISSED'}")

    out = [line("W1 reference / fastnn", ratio("w1", "reference"), 20)]
    g = by.get("w2", {}).get("gemm")
    out.append(line("W2 fastnn / GEMM floor", g and g["fastnn_over_floor"], 1.2, False))
    out.append(line("W2 fastnn on 1 thread / 1-thread GEMM floor",
                    g and g["fastnn_over_floor1"], 1.2, False))
    out.append(line("W2 torch / fastnn", ratio("w2", "torch"), 2))
    out.append(line("W2 sklearn / fastnn", ratio("w2", "sklearn"), 2))
    out.append(line("W3 batch 1 torch / fastnn", ratio("w3_b1", "torch"), 300))
    out.append(line("W3 batch 1 reference / fastnn", ratio("w3_b1", "reference"), 40))
    for w in ("w4_b32", "w4_b200"):
        out.append(line(f"{w.upper()} jax / fastnn", ratio(w, "jax"), 1))
    if start:
        out.append(line("W6 import fastnn, seconds", start["import"]["import_s"], 0.5, False))
        out.append(line("W6 fresh process, warm cache, one-epoch fit, seconds in all",
                        start["fit_warm"]["total_s"], 1.0, False))
    worst = max(summaries, key=lambda s: s["default_vs_1"], default=None)
    if worst:
        out.append(line(f"fastnn default / 1 thread, worst workload ({worst['workload']})",
                        worst["default_vs_1"], 1.2, False))
    off = [f"{s['workload']}:{r['contender']}" for s in summaries for r in s["rows"]
           if _accuracy_flag(s, r, next(b for b in s["rows"] if b["contender"] == BASE))]
    out.append("same accuracy within noise: " + ("yes" if not off else
                                                 "NO for " + ", ".join(off)))
    return out


# ------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (as CI)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; smoke 1)")
    p.add_argument("--json", help="write raw times and summaries to this file")
    p.add_argument("--workloads", help="comma-separated subset, e.g. w1,w3_b1")
    p.add_argument("--contenders", help="comma-separated subset (fastnn is always run)")
    p.add_argument("--prune", type=float, default=3.0,
                   help="drop settings this many times slower after round 1 (0: never)")
    p.add_argument("--cold-rounds", type=int, default=None,
                   help="cold-cache start-up runs (default 1; smoke 0)")
    p.add_argument("--eval-epochs", type=int, default=None,
                   help="epochs before every contender is scored (default: the "
                        "workload's, 5 or 12; smoke 2)")
    p.add_argument("--no-startup", action="store_true", help="skip workload 6")
    args = p.parse_args(argv)
    smoke = args.smoke = args.smoke or workloads.smoke_from_env()
    if smoke:
        global SETTLE_S
        SETTLE_S = 0.0          # tiny sizes check that it runs, not how fast
    args.rounds = args.rounds or (1 if smoke else 5)
    args.eval_epochs = args.eval_epochs or (2 if smoke else None)
    cold = args.cold_rounds if args.cold_rounds is not None else (0 if smoke else 1)
    names = [n.strip() for n in args.contenders.split(",")] if args.contenders else None
    if names is not None:
        unknown = set(names) - set(contenders.CONTENDERS)
        if unknown:
            p.error(f"unknown contenders {sorted(unknown)}; expected {list(contenders.CONTENDERS)}")
        names = [BASE] + [n for n in names if n != BASE]
    wls = workloads.all_workloads(smoke)
    if args.workloads:
        wanted = [w.strip() for w in args.workloads.split(",")]
        unknown = set(wanted) - set(workloads.NAMES)
        if unknown:
            p.error(f"unknown workloads {sorted(unknown)}; expected {list(workloads.NAMES)}")
        wls = [w for w in wls if w.name in wanted]
    entries = contenders.entries(names)

    summaries = []
    for wl in wls:
        _log(f"{wl.name}: {wl.title} ({wl.n_train} rows)")
        raw = run_workload(wl, entries, args.rounds, args.prune, args.eval_epochs)
        summaries.append(summarise(wl, raw))
        del raw
    start = None if args.no_startup else run_startup(args.rounds, cold)
    meta = machine_info()
    meta["command"] = "python bench/compare.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
    meta["command"] = meta["command"].strip()
    text = report(meta, summaries, start, args)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, workloads=summaries, startup=start), f, indent=1,
                      default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
