"""PNG figures for ``fastnn demo``: decision regions, every minibatch's loss,
and the optimizer comparison on moons.

matplotlib is optional (``pip install "fastnn-mlp[plot]"``) and imported only
inside these functions, through its object-oriented API (no pyplot, so no
global backend is chosen or changed).
"""

import os

import numpy as np

FAST, REF = "#1f77b4", "#ff7f0e"                  # fastnn blue, reference orange
REGION_COLOURS = ("#9ecae1", "#fdae6b", "#a1d99b")  # light: the predicted regions
POINT_COLOURS = ("#08519c", "#a63603", "#006d2c")   # dark: the data points


def matplotlib_module():
    """Import matplotlib (ImportError when it is not installed)."""
    import matplotlib
    return matplotlib


def _figure(rows, cols, width=4.2, height=3.6):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    return path


def _grid(X, steps=300, margin=0.25):
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = (hi - lo) * margin
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], steps)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], steps)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, np.c_[gx.ravel(), gy.ravel()]


def decision_regions(ax, result, title=None):
    """Colour the plane by the fastnn model's predicted class and draw the
    rows its accuracy was measured on over it."""
    from matplotlib.colors import ListedColormap
    data = result.data
    X_all = np.vstack([data.X, data.X_eval])
    gx, gy, grid = _grid(X_all)
    proba = result.model.predict_proba(grid)
    k = proba.shape[1]
    label = proba.argmax(axis=1).reshape(gx.shape)
    ax.pcolormesh(gx, gy, label, cmap=ListedColormap(REGION_COLOURS[:k]),
                  vmin=-0.5, vmax=k - 0.5, shading="auto", rasterized=True)
    ax.contour(gx, gy, label, levels=np.arange(k - 1) + 0.5, colors="k", linewidths=0.8)
    X, y = data.X_eval, np.asarray(data.y_eval)
    for c in range(k):
        pts = X[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=9 if len(X) > 1000 else 16,
                   color=POINT_COLOURS[c], edgecolors="white", linewidths=0.3,
                   label=f"class {c}")
    where = "test" if data.eval_on == "test" else "training"
    ax.set_title(title or f"{result.setup.name}: {result.acc_fast:.1%} ({where})", fontsize=10)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_xlim(gx.min(), gx.max())
    ax.set_ylim(gy.min(), gy.max())
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8,
              title=f"{where} points", title_fontsize=7)


def _epochs_axis(losses, result):
    per_epoch = -(-len(result.data.y) // result.batch_size)
    return np.arange(1, len(losses) + 1) / per_epoch, per_epoch


def _smooth(values, window):
    if window <= 1 or len(values) < window:
        return values
    c = np.cumsum(np.insert(np.asarray(values, float), 0, 0.0))
    out = np.empty(len(values))
    out[window - 1:] = (c[window:] - c[:-window]) / window
    out[:window - 1] = c[1:window] / np.arange(1, window)
    return out


def loss_curve(ax, result, colour=FAST, label="fastnn", reference=True, raw=True):
    """Every minibatch's loss against epochs (fastnn solid, reference dashed).
    Many noisy minibatches: fastnn's raw losses faint, moving averages on top."""
    series = [(result.history.batch_losses, colour, label, "-")]
    if reference:
        series.append((result.ref_losses, REF, "reference", "--"))
    for i, (losses, c, name, style) in enumerate(series):
        x, per_epoch = _epochs_axis(losses, result)
        if per_epoch > 1 and len(losses) > 200:
            window = max(per_epoch, len(losses) // 100)
            smooth = _smooth(losses, window)
            if i == 0 and raw:
                ax.plot(x, losses, color=c, alpha=0.2, linewidth=0.4)
                # batches of one row reach losses near 0: keep the averages readable
                low = max(float(np.min(losses)), float(smooth.min()) / 100)
                ax.fastnn_ylow = min(low, getattr(ax, "fastnn_ylow", np.inf))
            ax.plot(x, smooth, color=c, linestyle=style, linewidth=1.4,
                    label=f"{name} (mean of {window} batches)")
        else:
            ax.plot(x, losses, color=c, linestyle=style, linewidth=1.4, label=name)
    if hasattr(ax, "fastnn_ylow"):
        ax.set_ylim(bottom=ax.fastnn_ylow)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("minibatch loss")
    ax.grid(True, which="major", alpha=0.3)


def plot_loss_curves(results, out):
    """loss_curves.png: one panel per run, fastnn beside the reference."""
    cols = 4
    rows = -(-len(results) // cols)
    fig, axes = _figure(rows, cols, 4.0, 3.0)
    for ax, r in zip(axes.ravel(), results):
        loss_curve(ax, r)
        batch = "" if "batch" in r.setup.name else f" (batch {r.batch_size})"
        ax.set_title(f"{r.setup.experiment}: {r.setup.name}{batch}", fontsize=10)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(results):]:
        ax.set_visible(False)
    fig.suptitle("Every minibatch's loss: fastnn (solid) and the NumPy reference (dashed), "
                 "same initial weights", fontsize=11)
    return _save(fig, out, "loss_curves.png")


def plot_boundaries(results, out, experiment, cols=None):
    """<experiment>.png: the decision regions of each run of one experiment."""
    runs = [r for r in results if r.setup.experiment == experiment]
    cols = cols or len(runs)
    rows = -(-len(runs) // cols)
    fig, axes = _figure(rows, cols)
    for ax, r in zip(axes.ravel(), runs):
        decision_regions(ax, r)
    from .demo import EXPERIMENTS
    fig.suptitle(f"{experiment}: {EXPERIMENTS[experiment]}\nregions predicted by fastnn",
                 fontsize=10)
    return _save(fig, out, f"{experiment}.png")


def plot_quantiles(results, out):
    """quantiles.png: regions for batch 1 and 100, their losses and validation accuracy."""
    runs = [r for r in results if r.setup.experiment == "quantiles"]
    fig, axes = _figure(2, len(runs))
    for i, r in enumerate(runs):
        decision_regions(axes[0, i], r)
    colours = (FAST, "#2ca02c", "#d62728", "#9467bd")
    ax = axes[1, 0]
    for r, c in zip(runs, colours):
        loss_curve(ax, r, colour=c, label=f"batch {r.batch_size}", reference=False)
    ax.set_title("every minibatch's loss (fastnn)", fontsize=10)
    ax.legend(fontsize=7)
    if len(runs) > 1:
        ax = axes[1, 1]
        for r, c in zip(runs, colours):
            e = np.arange(1, r.epochs + 1)
            ax.plot(e, r.history.history["accuracy"], color=c, linestyle="--",
                    label=f"batch {r.batch_size}, training")
            ax.plot(e, r.history.history["val_accuracy"], color=c, marker="o", markersize=3,
                    label=f"batch {r.batch_size}, validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0.4, 1.0)
        ax.set_title("accuracy per epoch (fastnn)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[1, 2:]:
        ax.set_visible(False)
    from .demo import EXPERIMENTS
    fig.suptitle(f"quantiles: {EXPERIMENTS['quantiles']}; batch size 1 against 100",
                 fontsize=11)
    return _save(fig, out, "quantiles.png")


def plot_optimizers(results, out):
    """moons_optimizers.png: GD, momentum and Adam, without and with decay."""
    runs = [r for r in results if r.setup.experiment == "moons"]
    groups = [("constant learning rate", [r for r in runs if r.setup.decay is None]),
              ("learning rate / (1 + floor(epoch/1000))",
               [r for r in runs if r.setup.decay is not None])]
    colours = {"sgd": FAST, "momentum": "#2ca02c", "adam": "#d62728"}
    fig, axes = _figure(1, 2, 5.2, 4.6)
    for ax, (title, group) in zip(axes[0], groups):
        for r in group:
            label = (f"{r.setup.name} (lr {r.setup.lr:g}, batch {r.batch_size}): "
                     f"{r.acc_fast:.1%}")
            loss_curve(ax, r, colour=colours[r.setup.optimizer], label=label, reference=False,
                       raw=False)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, title="optimizer: test accuracy", title_fontsize=7,
                  loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle("moons: optimizers compared (minibatch losses averaged, fastnn)", fontsize=11)
    return _save(fig, out, "moons_optimizers.png")


def save_all(results, out):
    """Write every figure the results allow into ``out``; returns the paths."""
    os.makedirs(out, exist_ok=True)
    done = {r.setup.experiment for r in results}
    paths = []
    for name in ("blobs", "spiral"):
        if name in done:
            paths.append(plot_boundaries(results, out, name))
    if "quantiles" in done:
        paths.append(plot_quantiles(results, out))
    if "moons" in done:
        paths.append(plot_boundaries(results, out, "moons", cols=3))
        paths.append(plot_optimizers(results, out))
    if results:
        paths.append(plot_loss_curves(results, out))
    return paths
