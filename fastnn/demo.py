"""The classic teaching experiments, trained by fastnn and by the NumPy
reference side by side (``fastnn demo``).

Each run builds a fastnn ``Sequential`` and a ``fastnn.reference.Model`` that
starts from a copy of the same initial weights, and trains both on the same
rows in the same shuffled order (the reference shuffles with a copy of the
model's shuffling Generator), with the same optimizer, schedule, L2 factor and
dtype (float32). The table compares their accuracy and training time.

Experiments (data generated here; scikit-learn's generators are imported only
when the demo runs):

* blobs: 10,000 points in 3 blobs, 2-3-3 tanh/softmax net, SGD, batch 32;
* quantiles: 2-D Gaussian quantiles, 2-10-10-1 tanh/sigmoid net, Adam, batch
  sizes 1 and 100, with a train/validation/test split;
* moons: 900 points (noise 0.2), 2-5-2-1 relu/sigmoid net: gradient descent
  (full batch), momentum and Adam (minibatches of 64), each with and without
  learning-rate decay;
* AND: the 3-input truth table (output = first AND last input), 3-2-1 sigmoid;
* spiral: CS231n's 3-arm spiral (100 points per class): the linear softmax
  classifier and a 2-layer ReLU net (100 hidden units, L2 1e-3).
"""

import copy
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

DTYPE = "float32"
DEFAULT_OUT = "fastnn-demo"
PLOT_HINT = 'plots: pip install "fastnn-mlp[plot]" (matplotlib) to also save PNG figures'


# ------------------------------------------------------------------ settings

@dataclass(frozen=True)
class Setup:
    """One training run: the network, the optimizer and how long to train."""
    experiment: str
    name: str                 # the run's name within its experiment
    layers: tuple             # ((units, activation), ...); the last is the output
    loss: str
    optimizer: str            # "sgd", "momentum" or "adam"
    lr: float
    batch_size: int           # 0: the whole training set (full-batch gradient descent)
    epochs: int
    quick_epochs: int
    decay: tuple = None       # (decay_rate, interval): lr0 / (1 + rate*floor(epoch/interval))
    l2: float = 0.0


BLOBS = ("blobs", "2-D Gaussian blobs, 10,000 points, 3 classes")
QUANTILES = ("quantiles", "2-D Gaussian quantiles, 2 classes, 70/15/15 split")
MOONS = ("moons", "two moons, 900 points, noise 0.2")
AND = ("and", "3-input truth table, y = x1 AND x3")
SPIRAL = ("spiral", "CS231n spiral, 100 points x 3 arms")
EXPERIMENTS = dict([BLOBS, QUANTILES, MOONS, AND, SPIRAL])

_MOONS_NET = ((5, "relu"), (2, "relu"), (1, "sigmoid"))
_MOONS_DECAY = (1.0, 1000)     # lr0 / (1 + floor(epoch / 1000))

SETUPS = (
    Setup("blobs", "SGD", ((3, "tanh"), (3, "softmax")), "softmax_cross_entropy",
          "sgd", 0.01, 32, epochs=20, quick_epochs=5),
    Setup("quantiles", "Adam, batch 1", ((10, "tanh"), (10, "tanh"), (1, "sigmoid")),
          "binary_cross_entropy", "adam", 0.001, 1, epochs=30, quick_epochs=8),
    Setup("quantiles", "Adam, batch 100", ((10, "tanh"), (10, "tanh"), (1, "sigmoid")),
          "binary_cross_entropy", "adam", 0.001, 100, epochs=30, quick_epochs=8),
    Setup("moons", "GD", _MOONS_NET, "binary_cross_entropy",
          "sgd", 0.0007, 0, epochs=5000, quick_epochs=1500),
    Setup("moons", "momentum", _MOONS_NET, "binary_cross_entropy",
          "momentum", 0.0007, 64, epochs=5000, quick_epochs=1500),
    Setup("moons", "Adam", _MOONS_NET, "binary_cross_entropy",
          "adam", 0.0007, 64, epochs=5000, quick_epochs=1500),
    Setup("moons", "GD + decay", _MOONS_NET, "binary_cross_entropy",
          "sgd", 0.1, 0, epochs=5000, quick_epochs=1500, decay=_MOONS_DECAY),
    Setup("moons", "momentum + decay", _MOONS_NET, "binary_cross_entropy",
          "momentum", 0.1, 64, epochs=5000, quick_epochs=1500, decay=_MOONS_DECAY),
    Setup("moons", "Adam + decay", _MOONS_NET, "binary_cross_entropy",
          "adam", 0.01, 64, epochs=5000, quick_epochs=1500, decay=_MOONS_DECAY),
    Setup("and", "SGD", ((2, "sigmoid"), (1, "sigmoid")), "binary_cross_entropy",
          "sgd", 1.0, 0, epochs=5000, quick_epochs=5000),
    Setup("spiral", "softmax (linear)", ((3, "softmax"),), "softmax_cross_entropy",
          "sgd", 1.0, 0, epochs=200, quick_epochs=200, l2=1e-3),
    Setup("spiral", "2-layer net", ((100, "relu"), (3, "softmax")), "softmax_cross_entropy",
          "sgd", 1.0, 0, epochs=10000, quick_epochs=2000, l2=1e-3),
)


# ---------------------------------------------------------------------- data

@dataclass
class Data:
    """Training rows, optional validation rows, and the rows accuracy is
    measured on (``eval_on`` says which: "test" or "train")."""
    X: np.ndarray
    y: np.ndarray
    X_eval: np.ndarray
    y_eval: np.ndarray
    eval_on: str = "test"
    X_val: np.ndarray = None
    y_val: np.ndarray = None


def _split(X, y, fractions, seed):
    """Shuffle rows once and cut them into parts of the given fractions."""
    order = np.random.default_rng(seed).permutation(len(y))
    cuts = np.cumsum([int(round(f * len(y))) for f in fractions[:-1]])
    return [(X[idx], y[idx]) for idx in np.split(order, cuts)]


def _standardise(train, *others):
    mu, sd = train.mean(axis=0), train.std(axis=0)
    return [(a - mu) / sd for a in (train,) + others]


def spiral(points_per_class=100, classes=3, seed=0):
    """CS231n's spiral: arm j has radius 0..1 and angle 4j..4(j+1) plus noise."""
    rng = np.random.default_rng(seed)
    X = np.zeros((points_per_class * classes, 2))
    y = np.repeat(np.arange(classes), points_per_class)
    for j in range(classes):
        r = np.linspace(0.0, 1, points_per_class)
        t = (np.linspace(j * 4, (j + 1) * 4, points_per_class)
             + rng.standard_normal(points_per_class) * 0.2)
        X[y == j] = np.c_[r * np.sin(t), r * np.cos(t)]
    return X, y


def and_table():
    """All 8 rows of three bits; the label is the first AND the last bit."""
    X = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=float)
    return X, (X[:, 0].astype(int) & X[:, 2].astype(int))


# the data are fixed: the seed given to the demo varies weights and shuffling only
DATA_SEED = {"blobs": 1, "quantiles": 0, "moons": 0, "spiral": 0}


def make_data(experiment):
    """The demo's data for one experiment, as a ``Data``."""
    seed = DATA_SEED.get(experiment, 0)
    if experiment == "and":
        X, y = and_table()
        return Data(X, y, X, y, eval_on="train")
    if experiment == "spiral":
        X, y = spiral(seed=seed)
        return Data(X, y, X, y, eval_on="train")
    from sklearn import datasets  # imported here: `import fastnn` stays light
    if experiment == "blobs":
        X, y = datasets.make_blobs(n_samples=10_000, centers=3, n_features=2,
                                   random_state=seed)
        (X, y), (Xt, yt) = _split(X, y, (0.8, 0.2), seed)
        X, Xt = _standardise(X, Xt)
        return Data(X, y, Xt, yt)
    if experiment == "quantiles":
        X, y = datasets.make_gaussian_quantiles(n_samples=2000, n_features=2, n_classes=2,
                                                random_state=seed)
        (X, y), (Xv, yv), (Xt, yt) = _split(X, y, (0.7, 0.15, 0.15), seed)
        return Data(X, y, Xt, yt, X_val=Xv, y_val=yv)
    if experiment == "moons":
        X, y = datasets.make_moons(n_samples=900, noise=0.2, random_state=seed)
        (X, y), (Xt, yt) = _split(X, y, (2 / 3, 1 / 3), seed)
        return Data(X, y, Xt, yt)
    raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")


# ---------------------------------------------------------------- one run

@dataclass
class Result:
    """Both trainings of one ``Setup``."""
    setup: Setup
    data: Data
    epochs: int
    batch_size: int
    acc_fast: float
    acc_ref: float
    time_fast: float
    time_ref: float
    model: object                 # the trained fastnn Sequential
    history: object               # its History
    ref_losses: np.ndarray        # the reference's batch losses
    ref_val_accuracy: list = field(default_factory=list)

    @property
    def speedup(self):
        return self.time_ref / self.time_fast if self.time_fast > 0 else math.inf

    @property
    def network(self):
        widths = [self.data.X.shape[1]] + [u for u, _ in self.setup.layers]
        acts = [a for _, a in self.setup.layers]
        hidden = "/".join(dict.fromkeys(acts[:-1])) if len(acts) > 1 else "linear"
        return "-".join(map(str, widths)) + f" {hidden}/{acts[-1]}"


def _optimizers(setup):
    """The same optimizer for fastnn and for the reference."""
    import fastnn as fnn
    from fastnn import reference as ref
    if setup.optimizer == "sgd":
        return fnn.SGD(lr=setup.lr), ref.SGD(lr=setup.lr)
    if setup.optimizer == "momentum":
        return fnn.Momentum(lr=setup.lr, beta=0.9), ref.Momentum(lr=setup.lr, beta=0.9)
    return fnn.Adam(lr=setup.lr), ref.Adam(lr=setup.lr)


def _schedules(setup):
    from fastnn import reference as ref
    from fastnn import schedules
    if setup.decay is None:
        return None, None
    rate, interval = setup.decay
    return (schedules.StepInverseTimeDecay(rate, interval),
            ref.StepInverseTimeDecay(rate, interval))


def build(setup, n_in, seed=0):
    """A compiled fastnn model and the reference model with a copy of its
    initial weights (the final softmax/sigmoid is fused into the loss on
    both sides: the reference's last layer is linear)."""
    import fastnn as fnn
    from fastnn import reference as ref
    opt, ref_opt = _optimizers(setup)
    model = fnn.Sequential([fnn.Dense(u, activation=a) for u, a in setup.layers],
                           input_dim=n_in, dtype=DTYPE, seed=seed)
    model.compile(loss=setup.loss, optimizer=opt, l2=setup.l2)
    last = len(model.layers) - 1
    ref_layers = [ref.Dense(layer.W.copy(), layer.b.copy(),
                            activation="identity" if i == last else layer.activation)
                  for i, layer in enumerate(model.layers)]
    return model, ref.Model(ref_layers, setup.loss, l2=setup.l2), ref_opt


def _targets(setup, y):
    if setup.loss == "softmax_cross_entropy":
        return np.eye(setup.layers[-1][0], dtype=DTYPE)[y]
    return np.asarray(y, DTYPE).reshape(-1, 1)


def _ref_predict(setup, net, X):
    Z = net.forward(X)
    return Z.argmax(axis=1) if setup.loss == "softmax_cross_entropy" else (Z[:, 0] >= 0) * 1


def fit_reference(setup, net, opt, data, batch_size, epochs, rng):
    """Train the reference epoch by epoch, shuffling with ``rng`` (a copy of
    the fastnn model's shuffling Generator, so the rows come in the same
    order) and the same schedule; returns (batch losses, validation accuracy
    per epoch)."""
    X = np.asarray(data.X, DTYPE)
    T = _targets(setup, data.y)
    _, schedule = _schedules(setup)
    lr0 = opt.lr
    losses, val_acc = [], []
    for epoch in range(epochs):
        opt.lr = schedule(epoch, lr0) if schedule is not None else lr0
        out = net.fit(X, T, opt, batch_size, 1, shuffle=True, seed=rng)
        losses.extend(out["batch_losses"])
        if data.X_val is not None:
            pred = _ref_predict(setup, net, np.asarray(data.X_val, DTYPE))
            val_acc.append(float(np.mean(pred == data.y_val)))
    return np.asarray(losses), val_acc


def run(setup, data, quick=False, seed=0):
    """Train ``setup`` with fastnn and with the reference; returns a ``Result``."""
    epochs = setup.quick_epochs if quick else setup.epochs
    batch = setup.batch_size or len(data.y)
    model, net, ref_opt = build(setup, data.X.shape[1], seed)
    schedule, _ = _schedules(setup)
    val = None if data.X_val is None else (data.X_val, data.y_val)
    shuffle_rng = copy.deepcopy(model._shuffle_rng)     # the order fastnn will draw

    t0 = time.perf_counter()
    hist = model.fit(data.X, data.y, batch_size=batch, epochs=epochs, shuffle=True,
                     validation_data=val, lr_schedule=schedule)
    t_fast = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_losses, ref_val = fit_reference(setup, net, ref_opt, data, batch, epochs, shuffle_rng)
    t_ref = time.perf_counter() - t0

    acc_fast = float(np.mean(model.predict(data.X_eval) == data.y_eval))
    pred_ref = _ref_predict(setup, net, np.asarray(data.X_eval, DTYPE))
    acc_ref = float(np.mean(pred_ref == data.y_eval))
    return Result(setup, data, epochs, batch, acc_fast, acc_ref, t_fast, t_ref, model,
                  hist, ref_losses, ref_val)


def warm_up():
    """Load (or compile, on a cold cache) fastnn's float32 kernels; returns seconds."""
    import fastnn as fnn
    t0 = time.perf_counter()
    model = fnn.Sequential([fnn.Dense(2, activation="tanh"), fnn.Dense(2)],
                           input_dim=2, dtype=DTYPE, seed=0)
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    X = np.zeros((4, 2), DTYPE)
    model.fit(X, np.array([0, 1, 0, 1]), batch_size=2, epochs=1,
              validation_data=(X, np.array([0, 1, 0, 1])))
    model.predict(X)
    return time.perf_counter() - t0


def run_experiments(experiments=None, quick=False, seed=0, progress=None):
    """Run the chosen experiments (default: all five); returns a list of ``Result``.

    ``progress``, if given, is called with each ``Result`` as it finishes."""
    experiments = list(EXPERIMENTS) if experiments is None else list(experiments)
    for name in experiments:
        if name not in EXPERIMENTS:
            raise ValueError(f"experiments: unknown experiment {name!r}; "
                             f"choose from {list(EXPERIMENTS)}")
    results = []
    for name in experiments:
        data = make_data(name)
        for setup in SETUPS:
            if setup.experiment == name:
                result = run(setup, data, quick=quick, seed=seed)
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


# -------------------------------------------------------------------- table

def _optimizer_text(setup):
    name = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam"}[setup.optimizer]
    text = f"{name} lr {setup.lr:g}"
    if setup.decay is not None:
        text += " + decay"
    if setup.l2:
        text += f", L2 {setup.l2:g}"
    return text


def _seconds(t):
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def _speedup(x):
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


COLUMNS = ("dataset", "model", "optimizer", "batch", "epochs",
           "accuracy fastnn / ref", "time fastnn / ref", "speed-up")


def table_rows(results):
    """The table's cells, one tuple of strings per run (see ``COLUMNS``)."""
    rows = []
    for r in results:
        s = r.setup
        where = " (train)" if r.data.eval_on == "train" else ""
        rows.append((s.experiment, r.network, _optimizer_text(s),
                     f"{r.batch_size}" + (" (all)" if s.batch_size == 0 else ""),
                     f"{r.epochs}" + ("*" if r.epochs != s.epochs else ""),
                     f"{r.acc_fast:.1%} / {r.acc_ref:.1%}{where}",
                     f"{_seconds(r.time_fast)} / {_seconds(r.time_ref)}",
                     _speedup(r.speedup)))
    return rows


def format_table(results, compile_seconds=None):
    """The demo's table as text (one line per run, then notes)."""
    rows = [COLUMNS] + table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    right = {4, 7}                                       # numbers: epochs, speed-up
    lines = []
    for k, row in enumerate(rows):
        cells = [c.rjust(w) if i in right and k else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("accuracy: on held-out test rows, or (train) on the training rows as the "
                 "tutorials report it.")
    lines.append(f"Both trainings start from the same {DTYPE} weights and see the rows in "
                 "the same order; time: training only.")
    decays = {r.setup.decay for r in results if r.setup.decay is not None}
    for rate, interval in sorted(decays):
        lines.append(f"decay: lr = lr0 / (1 + {rate:g} * floor(epoch / {interval})).")
    if compile_seconds is not None:
        lines.append(f"fastnn's kernels were loaded (or compiled, on a first run) beforehand "
                     f"in {compile_seconds:.1f} s, not counted above.")
    cut = {}
    for r in results:
        if r.epochs != r.setup.epochs:
            cut.setdefault(f"{r.setup.experiment} {r.setup.epochs}", None)
    if cut:
        lines.append(f"* --quick: fewer epochs than the full demo, which runs "
                     f"{', '.join(cut)}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------- main

def _can_plot():
    try:
        from . import plots as _plots
        _plots.matplotlib_module()
    except ImportError:
        return False
    return True


class OutFolderError(ValueError):
    """The figures' folder cannot be made (raised before any training)."""


def make_out(out):
    """Create the figures' folder ``out`` (OutFolderError naming it if it cannot be)."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise OutFolderError(f"out: cannot create the folder {str(out)!r} "
                             f"({e.strerror or e})") from None


def main(out=DEFAULT_OUT, quick=False, experiments=None, seed=0, plots=True, echo=None):
    """Run the demo: print the table and, with matplotlib, save figures to
    ``out``. Returns the list of ``Result``."""
    if echo is None:
        def echo(text):
            print(text, flush=True)
    t_start = time.perf_counter()
    echo(f"fastnn demo{' --quick' if quick else ''}: the classic experiments, fastnn beside "
         "the NumPy reference (fastnn.reference)")
    echo("loading fastnn's compiled kernels (the first run after installing compiles them, "
         "which takes a while)...")
    plotting = plots and _can_plot()
    if plotting:
        make_out(out)       # a folder that cannot be made fails now, not after training
    compile_seconds = warm_up()

    def progress(r):
        echo(f"  {r.setup.experiment:9s} {r.setup.name:17s} fastnn {r.acc_fast:6.1%} in "
             f"{_seconds(r.time_fast):>7s}, reference {r.acc_ref:6.1%} in "
             f"{_seconds(r.time_ref):>7s}")

    results = run_experiments(experiments, quick=quick, seed=seed, progress=progress)
    echo("")
    echo(format_table(results, compile_seconds=compile_seconds))
    echo("")
    if plotting:
        from . import plots as _plots
        for path in _plots.save_all(results, out):
            echo(f"saved {path}")
    elif plots:
        echo(PLOT_HINT)
    echo(f"demo finished in {time.perf_counter() - t_start:.1f} s")
    return results
