"""The demo: the classic experiments reach the tutorials' accuracies with
fastnn and with the NumPy reference alike, from the same weights; the
command line runs it, with or without matplotlib."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn import cli, demo

FIGURES = ("blobs.png", "quantiles.png", "moons.png", "moons_optimizers.png", "spiral.png",
           "loss_curves.png")


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One run of ``fastnn demo --quick`` (figures too when matplotlib is there)."""
    out = tmp_path_factory.mktemp("demo") / "figures"
    lines = []
    results = demo.main(out=str(out), quick=True, echo=lines.append)
    return {(r.setup.experiment, r.setup.name): r for r in results}, "\n".join(lines), out


def test_every_experiment_runs(quick):
    results, _, _ = quick
    assert {e for e, _ in results} == set(demo.EXPERIMENTS)
    assert len(results) == len(demo.SETUPS)


@pytest.mark.parametrize("key, low, high", [
    (("blobs", "SGD"), 0.95, 1.0),
    (("quantiles", "Adam, batch 1"), 0.90, 1.0),
    (("moons", "Adam"), 0.93, 1.0),
    (("moons", "Adam + decay"), 0.93, 1.0),
    (("moons", "momentum + decay"), 0.93, 1.0),
    (("and", "SGD"), 1.0, 1.0),
    (("spiral", "softmax (linear)"), 0.45, 0.58),   # CS231n: 49%
    (("spiral", "2-layer net"), 0.97, 1.0),         # CS231n: 98%
])
def test_accuracy_reaches_the_tutorials(quick, key, low, high):
    r = quick[0][key]
    assert low <= r.acc_fast <= high
    assert low <= r.acc_ref <= high


def test_batch_one_beats_batch_hundred_at_equal_epochs(quick):
    results = quick[0]
    assert (results["quantiles", "Adam, batch 1"].acc_fast
            > results["quantiles", "Adam, batch 100"].acc_fast)


def test_fastnn_and_reference_agree(quick):
    for r in quick[0].values():
        assert abs(r.acc_fast - r.acc_ref) <= 0.02, r.setup
        fast, ref = r.history.batch_losses, r.ref_losses
        assert len(fast) == len(ref) == r.epochs * -(-len(r.data.y) // r.batch_size)
        # same weights, same rows in the same order: the first steps agree closely
        np.testing.assert_allclose(fast[:20], ref[:20], rtol=2e-3, atol=1e-5)


def test_table_lists_every_run(quick):
    results, text, _ = quick
    for word in ("dataset", "model", "optimizer", "accuracy fastnn / ref", "time fastnn / ref",
                 "speed-up"):
        assert word in text
    for r in results.values():
        assert any(line.startswith(r.setup.experiment) and r.network in line
                   and f"{r.acc_fast:.1%} / {r.acc_ref:.1%}" in line
                   for line in text.splitlines()), r.setup
    assert "--quick: fewer epochs" in text


def test_figures_are_saved(quick):
    _, text, out = quick
    if not _has_matplotlib():
        assert demo.PLOT_HINT in text
        pytest.skip("matplotlib is not installed")
    for name in FIGURES:
        path = out / name
        assert path.stat().st_size > 10_000, name
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_table_prints_and_a_hint(monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # import raises ImportError
    lines = []
    results = demo.main(out=str(tmp_path / "figs"), quick=True, experiments=["and"],
                        echo=lines.append)
    assert [r.acc_fast for r in results] == [1.0]
    assert demo.PLOT_HINT in lines
    assert 'pip install "fastnn-mlp[plot]"' in demo.PLOT_HINT
    assert not (tmp_path / "figs").exists()


def test_reference_starts_from_the_same_weights():
    setup = next(s for s in demo.SETUPS if s.experiment == "moons")
    model, net, _ = demo.build(setup, 2, seed=3)
    assert len(net.layers) == len(model.layers)
    for layer, ref_layer in zip(model.layers, net.layers):
        np.testing.assert_array_equal(layer.W, ref_layer.W)
        np.testing.assert_array_equal(layer.b, ref_layer.b)
        assert ref_layer.W.dtype == np.float32
    assert net.layers[-1].activation == "identity"      # sigmoid fused into the loss


def test_data():
    X, y = demo.spiral()
    assert X.shape == (300, 2) and np.bincount(y).tolist() == [100, 100, 100]
    X, y = demo.and_table()
    assert X.shape == (8, 3) and len({tuple(r) for r in X}) == 8
    np.testing.assert_array_equal(y, X[:, 0].astype(int) & X[:, 2].astype(int))
    d = demo.make_data("quantiles")
    assert (len(d.y), len(d.y_val), len(d.y_eval)) == (1400, 300, 300)
    with pytest.raises(ValueError, match="experiment"):
        demo.make_data("mnist")
    with pytest.raises(ValueError, match="experiments"):
        demo.run_experiments(["mnist"])


def test_cli_demo(capsys, tmp_path):
    assert cli.main(["demo", "--quick", "--only", "and", "--no-plots",
                     "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "3-2-1 sigmoid/sigmoid" in out
    assert not (tmp_path / "o").exists()


def test_cli_bench_dispatches_to_the_script(monkeypatch, tmp_path, capfd):
    script = tmp_path / "compare.py"
    script.write_text("import sys; print('compare', *sys.argv[1:]); sys.exit(3)\n")
    monkeypatch.setattr(cli, "find_bench_script", lambda: str(script))
    assert cli.main(["bench", "--quick", "x"]) == 3
    assert "compare --quick x" in capfd.readouterr().out
    monkeypatch.setattr(cli, "find_bench_script", lambda: None)
    assert cli.main(["bench"]) != 0
    assert "bench/compare.py" in capfd.readouterr().err


def test_python_dash_m_and_light_imports():
    code = ("import sys, fastnn, fastnn.demo, fastnn.plots, fastnn.cli; "
            "heavy = [m for m in ('sklearn', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
    done = subprocess.run([sys.executable, "-m", "fastnn", "--version"], check=True,
                          capture_output=True, text=True, env={**os.environ})
    assert done.stdout.startswith("fastnn ")


def test_an_out_folder_that_cannot_be_made_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--quick", "--only", "and", "--out", str(blocked / "figs")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--out: cannot create the folder" in err and "a-file" in err
    with pytest.raises(ValueError, match="out: cannot create"):
        demo.main(out=str(blocked / "figs"), quick=True, experiments=["and"],
                  echo=lambda text: None)
