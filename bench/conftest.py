"""pytest options for the benchmark suite: ``--smoke`` (or FASTNN_BENCH_SMOKE=1)
runs every benchmark once at tiny sizes, as CI does."""

import pytest

from bench import workloads


def pytest_addoption(parser):
    parser.addoption("--smoke", action="store_true", default=False,
                     help="tiny workload sizes, one round (also FASTNN_BENCH_SMOKE=1)")


def is_smoke(config):
    return bool(config.getoption("--smoke")) or workloads.smoke_from_env()


@pytest.fixture(scope="session")
def smoke(request):
    return is_smoke(request.config)
