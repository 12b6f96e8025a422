"""The benchmark suite's own pieces: deterministic workloads, one scoring rule
for every contender, contenders that agree on a step, and compare.py's report
at smoke size (so ``python bench/compare.py`` cannot rot unnoticed)."""

import math

import numpy as np
import pytest

from bench import compare, contenders, workloads


def test_workloads_are_deterministic_and_shaped():
    for wl in workloads.all_workloads(smoke=True):
        a, b = workloads._generate.__wrapped__(wl.data, wl.n_train, wl.n_test, wl.seed), wl.load()
        assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
        assert b.X.shape == (wl.n_train, wl.widths[0]) and b.X.dtype == np.float32
        assert b.X_test.shape == (wl.n_test, wl.widths[0])
        if wl.task != "regression":
            assert set(np.unique(b.y)) <= set(range(max(2, wl.widths[-1])))
        W0 = [W for W, _ in wl.initial_weights()]
        assert [W.shape for W in W0] == list(zip(wl.widths[:-1], wl.widths[1:]))


def test_names_and_sizes():
    assert workloads.NAMES == tuple(w.name for w in workloads.all_workloads(smoke=True))
    full = workloads.get("w2", smoke=False)
    assert (full.n_train, full.widths, full.batch_size) == (60_000, (784, 256, 128, 10), 128)
    assert workloads.get("w3_bfull", smoke=False).batch_size == 1_400
    # forward 2*n*sum(in*out), dW the same, dX of every layer but the first
    assert full.epoch_flops() == 2 * 60_000 * (2 * 234_752 + 32_768 + 1_280)
    with pytest.raises(ValueError, match="unknown workload"):
        workloads.get("w9")


def test_smoke_env(monkeypatch):
    monkeypatch.setenv(workloads.SMOKE_ENV, "1")
    assert workloads.smoke_from_env() and workloads.all_workloads()[0].smoke
    monkeypatch.setenv(workloads.SMOKE_ENV, "0")
    assert not workloads.smoke_from_env()


def test_score():
    wl = workloads.get("w1", smoke=True)
    y = np.array([0, 1, 2, 1])
    P = np.full((4, 3), 0.1)
    P[np.arange(4), [0, 1, 2, 0]] = 0.8
    loss, acc = workloads.score(wl, P, y)
    assert acc == 0.75 and loss == pytest.approx(-(3 * math.log(0.8) + math.log(0.1)) / 4)
    binary = workloads.get("w3_b32", smoke=True)
    assert workloads.score(binary, np.array([0.9, 0.2]), np.array([1, 1]))[1] == 0.5
    reg = workloads.get("w4_b32", smoke=True)
    assert workloads.score(reg, np.array([1.0, 3.0]), np.array([1.0, 3.0])) == (0.0, 1.0)


def test_fastnn_and_reference_agree_after_an_epoch():
    wl = workloads.get("w3_b32", smoke=True)
    fast = contenders.FastNN(1).setup(wl)
    ref = contenders.Reference(1).setup(wl)
    lf, af = fast.evaluate()
    lr, ar = ref.evaluate()
    # same start, same settings, different shuffles: close, not equal
    assert abs(lf - lr) < 0.05 and math.isfinite(lf)


def test_paired_ratio_and_prune():
    times = {"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, None]}
    assert compare._paired(times, "b", "a") == pytest.approx(1.5)   # rounds both ran

    class C:
        def __init__(self, name, threads):
            self.name, self.threads = name, threads
            self.label = compare._label(name, threads)
    cs = [C("fastnn", None), C("fastnn", 1), C("torch", 1), C("torch", 2)]
    t = {c.label: x for c, x in zip(cs, [9.0, 1.0, 1.0, 5.0])}
    pruned = {}
    kept = compare._prune(cs, t, 3.0, pruned, "round 1")
    assert [c.label for c in kept] == ["fastnn[default]", "fastnn[1t]", "torch[1t]"]
    assert pruned == {"torch[2t]": (5.0, "round 1")}


def test_compare_prints_a_table(capsys):
    compare.main(["--smoke", "--rounds", "2", "--workloads", "w1,w3_b32",
                  "--contenders", "fastnn,reference", "--no-startup"])
    out = capsys.readouterr().out
    assert "| Workload | Contender | Threads | Time | × fastnn | Accuracy | Loss |" in out
    assert "| reference |" in out and "W1 reference / fastnn" in out


def test_core_pair_runs():
    from bench import core_pair
    alone, pair = core_pair.measure((8, 8, 8), repeats=1, target_s=1e-5)
    assert alone > 0 and pair > 0
    alone, pair = core_pair.chunk_pair(repeats=1, n=2_000, reps=2)
    assert alone > 0 and pair > 0
    splits = core_pair.split_pair(repeats=1, rows=8, n_in=16, n_out=8, reps=2)
    assert set(splits) == {"rows", "columns"}
    assert all(alone > 0 and pair > 0 for alone, pair in splits.values())


def test_sklearn_compare_refuses_an_unknown_workload(capsys):
    from bench import sklearn_compare
    with pytest.raises(SystemExit):
        sklearn_compare.main(["--workloads", "digits,nope"])
    assert "unknown workloads ['nope']" in capsys.readouterr().err
