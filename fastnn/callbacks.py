"""Callbacks: objects with ``on_epoch_end(epoch, logs)`` returning True to stop
training; optional ``on_train_begin(model)`` / ``on_train_end(model)``."""

import math

import numpy as np

from . import _validate


class Callback:
    model = None

    def on_train_begin(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs):
        return False

    def on_train_end(self, model):
        pass


class CallbackList:
    def __init__(self, callbacks):
        if callbacks is None:
            callbacks = []
        elif not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        for i, cb in enumerate(callbacks):
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] has no on_epoch_end(epoch, logs) method")
        self.callbacks = list(callbacks)

    def on_train_begin(self, model):
        for cb in self.callbacks:
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin(model)

    def on_epoch_end(self, epoch, logs):
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs)) or stop
        return stop

    def on_train_end(self, model):
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(model)


def _mode(monitor):
    return "max" if ("acc" in monitor or "score" in monitor) else "min"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; with ``restore_best`` the best epoch's weights (and
    BatchNorm statistics) are put back at the end."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best=True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a string, got {monitor!r}")
        self.monitor = monitor
        self.patience = _validate.nonneg_int(patience, "patience")
        self.min_delta = _validate.real(min_delta, "min_delta", 0.0)
        self.restore_best = bool(restore_best)
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self._best_params = None

    def on_train_begin(self, model):
        self.model = model
        self.best, self.best_epoch, self.wait, self.stopped_epoch = None, None, 0, None
        self._best_params = None

    def _improved(self, value):
        if self.best is None:
            return True
        if _mode(self.monitor) == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r} is not among the logged "
                             f"metrics {sorted(logs)}")
        value = logs[self.monitor]
        if math.isfinite(value) and self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best and self.model is not None:
                self._best_params = (self.model._params.copy(), self.model._state.copy())
            return False
        self.wait += 1
        if self.wait > self.patience - 1 if self.patience else True:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best and self._best_params is not None:
            model._params[...] = self._best_params[0]
            model._state[...] = self._best_params[1]


class ModelCheckpoint(Callback):
    """Save the model to ``path`` after every epoch, or only when ``monitor``
    improves (``save_best_only``). ``path`` may contain ``{epoch}``."""

    def __init__(self, path, monitor="val_loss", save_best_only=False):
        self.path = str(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.best = None

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise ValueError(f"ModelCheckpoint: monitor={self.monitor!r} is not among the "
                                 f"logged metrics {sorted(logs)}")
            better = (self.best is None or (value > self.best if _mode(self.monitor) == "max"
                                            else value < self.best))
            if not better:
                return False
            self.best = value
        self.model.save(self.path.format(epoch=epoch + 1))
        return False


class TerminateOnNaN(Callback):
    """Stop when the epoch's loss is NaN or infinite."""

    def on_epoch_end(self, epoch, logs):
        loss = logs.get("loss")
        return loss is not None and not np.isfinite(loss)
