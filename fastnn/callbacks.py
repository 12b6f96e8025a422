"""Callbacks: objects with ``on_epoch_end(epoch, logs)`` returning True to stop
training; optional ``on_train_begin(model)`` / ``on_train_end(model)``.

``logs`` holds the epoch's ``loss``, ``accuracy`` (classification),
``val_loss``/``val_accuracy`` (with validation data) and ``lr``. ``epoch`` is
the model's epoch number, counted from 0 across fit calls. Callbacks that watch
a ``monitor`` have it checked against the logged names before training starts.
"""

import csv
import math
import os

import numpy as np

from . import _validate


class Callback:
    """Base class; every hook is optional. ``self.model`` is set at train begin."""
    model = None

    def on_train_begin(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs):
        return False

    def on_train_end(self, model):
        pass


class CallbackList:
    """The callbacks of one fit call, called in order."""

    def __init__(self, callbacks):
        if callbacks is None:
            callbacks = []
        elif not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        for i, cb in enumerate(callbacks):
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] has no on_epoch_end(epoch, logs) method "
                                f"(got {type(cb).__name__})")
        self.callbacks = list(callbacks)

    def check_keys(self, keys):
        """Let callbacks that watch a metric check it will be logged."""
        for cb in self.callbacks:
            check = getattr(cb, "_check_keys", None)
            if callable(check):
                check(keys)

    def on_train_begin(self, model):
        for cb in self.callbacks:
            if callable(getattr(cb, "on_train_begin", None)):
                cb.on_train_begin(model)

    def on_epoch_end(self, epoch, logs):
        """Call every callback; returns the names of those asking to stop."""
        stoppers = []
        for cb in self.callbacks:
            if cb.on_epoch_end(epoch, dict(logs)):
                stoppers.append(type(cb).__name__)
        return stoppers

    def on_train_end(self, model):
        for cb in self.callbacks:
            if callable(getattr(cb, "on_train_end", None)):
                cb.on_train_end(model)


def _mode(monitor):
    """'max' for accuracies and scores, 'min' for losses."""
    return "max" if ("acc" in monitor or "score" in monitor) else "min"


def _monitor(monitor):
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be a string, got {monitor!r}")
    return monitor


class _Monitoring(Callback):
    """Shared by callbacks that track the best value of ``monitor``."""

    def _check_keys(self, keys):
        if self.monitor not in keys:
            hint = " (pass validation_data or validation_split)" if \
                self.monitor.startswith("val_") else ""
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r} will not be "
                             f"logged; logged metrics are {list(keys)}{hint}")

    def _value(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r} is not among "
                             f"the logged metrics {sorted(logs)}")
        return float(logs[self.monitor])

    def _better(self, value, best, min_delta):
        """``value`` improves on ``best`` by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if _mode(self.monitor) == "max":
            return value > best + min_delta
        return value < best - min_delta


class EarlyStopping(_Monitoring):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row (``patience=0``: at the first epoch without
    improvement). With ``restore_best`` the weights and BatchNorm statistics of
    the best epoch are put back when training ends (however it ends); the
    optimizer state is not rolled back. Accuracies are maximised, losses
    minimised. ``best``, ``best_epoch`` and ``stopped_epoch`` are kept."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True):
        self.monitor = _monitor(monitor)
        self.patience = _validate.nonneg_int(patience, "patience")
        self.min_delta = _validate.real(min_delta, "min_delta", 0.0)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.restore_best = bool(restore_best)
        self.on_train_begin(None)

    def on_train_begin(self, model):
        self.model = model
        self.best = self.best_epoch = self.stopped_epoch = None
        self.wait = 0
        self._best_weights = None

    def on_epoch_end(self, epoch, logs):
        value = self._value(logs)
        if self._better(value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best and self.model is not None:
                self._best_weights = (self.model._params.copy(), self.model._state.copy())
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best and self._best_weights is not None:
            model._params[...] = self._best_weights[0]
            model._state[...] = self._best_weights[1]


class ModelCheckpoint(_Monitoring):
    """Save the model to ``path`` (``model.save``: atomic, one file) after every
    epoch, or with ``save_best_only`` only when ``monitor`` improves. ``path``
    may contain ``{epoch}`` (1-based, like Keras) to keep one file per epoch."""

    def __init__(self, path, monitor="val_loss", save_best_only=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("path must not be empty")
        try:
            self.path.format(epoch=1)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"path {self.path!r} may contain only the field {{epoch}} "
                             f"({e!r}); double other braces") from None
        self.monitor = _monitor(monitor)
        if not isinstance(save_best_only, (bool, np.bool_)):
            raise TypeError(f"save_best_only must be a bool, got {save_best_only!r}")
        self.save_best_only = bool(save_best_only)
        self.best = None

    def _check_keys(self, keys):
        if self.save_best_only:
            super()._check_keys(keys)
        directory = os.path.dirname(os.path.abspath(self.path.format(epoch=1)))
        if not os.path.isdir(directory):
            raise ValueError(f"ModelCheckpoint: the directory of path {self.path!r} "
                             "does not exist")

    def on_train_begin(self, model):
        self.model = model
        self.best = None

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = self._value(logs)
            if not self._better(value, self.best, 0.0):
                return False
            self.best = value
        self.model.save(self.path.format(epoch=epoch + 1))
        return False


class TerminateOnNaN(Callback):
    """Stop when an epoch's ``loss`` or ``val_loss`` is NaN or infinite. (A
    non-finite training loss already stops ``fit`` inside the epoch, before the
    bad update is applied, with a RuntimeWarning; that epoch still reaches the
    callbacks with its non-finite loss. This also catches a validation loss
    that overflows.)"""

    def on_epoch_end(self, epoch, logs):
        return any(key in logs and not math.isfinite(logs[key]) for key in ("loss", "val_loss"))


class CSVLogger(Callback):
    """Append one row per epoch to the CSV file ``path``: ``epoch`` then the
    logged metrics. The file is rewritten at train begin unless ``append``;
    each row is flushed as it is written, so a crash keeps the rows so far."""

    def __init__(self, path, separator=",", append=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be a single character, got {separator!r}")
        self.separator = separator
        if not isinstance(append, (bool, np.bool_)):
            raise TypeError(f"append must be a bool, got {append!r}")
        self.append = bool(append)
        self._keys = None

    def _check_keys(self, keys):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ValueError(f"CSVLogger: the directory of path {self.path!r} does not exist")

    def on_train_begin(self, model):
        self.model = model
        self._keys = None
        if not self.append:
            with open(self.path, "w", newline=""):
                pass
        elif os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as f:
                first = f.readline().rstrip("\r\n")
            self._keys = first.split(self.separator)[1:] if first else None

    def on_epoch_end(self, epoch, logs):
        if self._keys is None:
            self._keys = list(logs)
            row = ["epoch"] + self._keys
            self._write(row)
        self._write([epoch] + [logs.get(k, "") for k in self._keys])
        return False

    def _write(self, row):
        with open(self.path, "a", newline="") as f:
            csv.writer(f, delimiter=self.separator).writerow(row)


class ReduceLROnPlateau(_Monitoring):
    """Multiply the optimizer's ``lr`` by ``factor`` when ``monitor`` has not
    improved by more than ``min_delta`` for ``patience`` epochs, then wait
    ``cooldown`` epochs before counting again; never below ``min_lr``.

    It lowers ``model.optimizer.lr``, the base rate the trainer reads at the
    start of every epoch (a ``lr_schedule`` then scales the new base), so the
    change persists in the model (and in a saved file)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 cooldown=0, min_lr=0.0, verbose=0):
        self.monitor = _monitor(monitor)
        self.factor = _validate.real(factor, "factor", 0.0, 1.0, low_open=True, high_open=True)
        self.patience = _validate.nonneg_int(patience, "patience")
        self.min_delta = _validate.real(min_delta, "min_delta", 0.0)
        self.cooldown = _validate.nonneg_int(cooldown, "cooldown")
        self.min_lr = _validate.real(min_lr, "min_lr", 0.0)
        if isinstance(verbose, (bool, np.bool_)) or verbose not in (0, 1):
            raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
        self.verbose = int(verbose)
        self.on_train_begin(None)

    def on_train_begin(self, model):
        self.model = model
        self.best = None
        self.wait = 0
        self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs):
        value = self._value(logs)
        improved = self._better(value, self.best, self.min_delta)
        if improved:
            self.best, self.wait = value, 0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return False
        if improved:
            return False
        self.wait += 1
        if self.wait >= self.patience:
            opt = self.model.optimizer
            new = max(opt.lr * self.factor, self.min_lr)
            if new < opt.lr and new > 0:
                if self.verbose:
                    print(f"ReduceLROnPlateau: epoch {epoch + 1}: lr {opt.lr:.4g} -> {new:.4g}",
                          flush=True)
                opt.lr = float(new)
            self.cooldown_left = self.cooldown
            self.wait = 0
        return False
