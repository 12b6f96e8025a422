"""The benchmark table: contenders x workloads x thread settings, one
parametrised benchmark (``benchmark.group`` = workload), final held-out loss and
accuracy in ``extra_info``; and the start-up benchmark (workload 6), which times
fresh processes so that compilation stays out of every other timed region.

    pytest bench                                    # full sizes, a few minutes
    FASTNN_BENCH_SMOKE=1 pytest bench -q --benchmark-disable   # CI's smoke run

``python bench/compare.py`` runs the same workloads interleaved and prints the
ratios; this suite is the pytest-benchmark view of the same table.
"""

import math
import zlib

import pytest

from bench import contenders, startup, workloads
from bench.conftest import is_smoke

FULL_ROUNDS = 5


def _entries(smoke):
    """(contender name, threads); smoke: fastnn's default and 1 thread, the others 1."""
    out = []
    for name, cls in contenders.CONTENDERS.items():
        options = cls.threads_options
        if smoke:
            options = options[:2] if name == "fastnn" else options[:1]
        out += [(name, t) for t in options]
    return out


def pytest_generate_tests(metafunc):
    if "entry" in metafunc.fixturenames:
        params = [pytest.param(e, id=f"{e[0]}-{'default' if e[1] is None else f'{e[1]}t'}")
                  for e in _entries(is_smoke(metafunc.config))]
        metafunc.parametrize("entry", params)


@pytest.mark.parametrize("workload_name", workloads.NAMES)
def test_epoch(benchmark, smoke, workload_name, entry):
    name, threads = entry
    cls = contenders.CONTENDERS[name]
    reason = cls.unavailable()
    if reason:
        pytest.skip(reason)
    wl = workloads.get(workload_name, smoke)
    data = wl.load()
    checksum = _checksum(data)
    contender = cls(threads).setup(wl)          # compiles and warms up: untimed
    benchmark.group = wl.name
    benchmark.extra_info.update(workload=wl.title, contender=name,
                                threads="default" if threads is None else threads,
                                rows=wl.n_train, batch_size=wl.batch_size)
    # one more untimed epoch first: the setup's warm-up ran before other work
    benchmark.pedantic(contender.run_epoch, rounds=1 if smoke else FULL_ROUNDS,
                       iterations=1, warmup_rounds=0 if smoke else 1)
    loss, accuracy = contender.evaluate()
    benchmark.extra_info.update(loss=loss, accuracy=accuracy)
    assert math.isfinite(loss)
    assert _checksum(data) == checksum, f"{name} changed the shared training data"


def _checksum(data):
    return [zlib.crc32(a) for a in (data.X, data.y, data.X_test, data.y_test)]


@pytest.mark.parametrize("case", startup.CASES)
def test_startup(benchmark, smoke, case):
    if case == "fit_cold" and smoke:
        pytest.skip("the cold case compiles every kernel (~15 s); run without --smoke")
    benchmark.group = "w6_startup"
    info = {}

    def once():
        info.update(startup.run(case))

    # the warm case runs once untimed first, so the cache is certainly warm
    benchmark.pedantic(once, rounds=1 if smoke else 3, iterations=1,
                       warmup_rounds=1 if case == "fit_warm" else 0)
    benchmark.extra_info.update(info)
    assert info["import_s"] > 0
