"""The ``fastnn`` command: ``fastnn demo`` (the main job) and ``fastnn bench``.

    fastnn demo [--out DIR] [--quick]   the classic experiments, fastnn beside NumPy
    fastnn bench [ARGS...]              run bench/compare.py from a source checkout
    python -m fastnn ...                the same
"""

import argparse
import os
import subprocess
import sys

BENCH_SCRIPT = os.path.join("bench", "compare.py")


def _parser():
    from . import __version__
    from .demo import DEFAULT_OUT, EXPERIMENTS
    parser = argparse.ArgumentParser(
        prog="fastnn", description="fastnn: fast multilayer perceptrons on CPUs.")
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="train the classic teaching networks with fastnn and with the NumPy "
                     "reference, print the comparison and save plots",
        description="Train the classic teaching experiments (blobs, Gaussian quantiles, "
                    "moons, the AND table, the CS231n spiral) with fastnn and with the plain "
                    "NumPy reference from the same initial weights, print one table of "
                    "accuracy, time and speed-up, and save PNG figures when matplotlib is "
                    "installed.")
    demo.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                      help=f"folder for the PNG figures (default: ./{DEFAULT_OUT})")
    demo.add_argument("--quick", action="store_true",
                      help="fewer epochs where a run is long; the table marks them")
    demo.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), metavar="EXPERIMENT",
                      help=f"run only these experiments ({', '.join(EXPERIMENTS)})")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed for initial weights and shuffling (default 0)")
    demo.add_argument("--no-plots", action="store_true", help="print the table only")

    bench = sub.add_parser(
        "bench", help="run the benchmark comparison (bench/compare.py of a source checkout)",
        description="Run bench/compare.py, which times fastnn against the NumPy reference, "
                    "scikit-learn and (when installed) PyTorch. Extra arguments are passed "
                    "to the script.")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for bench/compare.py")
    return parser


def find_bench_script():
    """bench/compare.py in the source tree fastnn runs from, or in the current
    folder; None when neither has one (e.g. an installed wheel)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for root in (here, os.getcwd()):
        path = os.path.join(root, BENCH_SCRIPT)
        if os.path.isfile(path):
            return path
    return None


def bench(args):
    path = find_bench_script()
    if path is None:
        print("fastnn bench runs bench/compare.py, which ships with the source tree, not "
              "with the installed package.\nFrom a checkout of the fastnn repository run "
              "`python bench/compare.py` (or `fastnn bench` inside it), after "
              "`pip install -e \".[bench]\"`.", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, path, *args])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"] and argv[1:2] not in (["-h"], ["--help"]):
        return bench(argv[1:])            # every further argument is the script's
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "demo":
        from . import demo
        try:
            demo.main(out=ns.out, quick=ns.quick, experiments=ns.only, seed=ns.seed,
                      plots=not ns.no_plots)
        except demo.OutFolderError as e:      # raised before any training
            parser.error(f"--{e}")
        return 0
    if ns.command == "bench":
        return bench(ns.args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
