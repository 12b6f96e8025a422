"""Learning-rate schedules, applied once per epoch: ``lr = schedule(epoch, lr0)``
with ``epoch`` counted from 0 at the model's first epoch. Any callable
``f(epoch, lr0) -> lr`` works too."""

import math

from . import _validate


class Schedule:
    def __call__(self, epoch, lr0):
        raise NotImplementedError

    def get_config(self):
        return dict(vars(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class InverseTimeDecay(Schedule):
    """``lr0 / (1 + decay_rate * epoch)``."""

    def __init__(self, decay_rate):
        self.decay_rate = _validate.real(decay_rate, "decay_rate", 0.0)

    def __call__(self, epoch, lr0):
        return lr0 / (1.0 + self.decay_rate * epoch)


class StepInverseTimeDecay(Schedule):
    """``lr0 / (1 + decay_rate * floor(epoch / interval))``."""

    def __init__(self, decay_rate, interval):
        self.decay_rate = _validate.real(decay_rate, "decay_rate", 0.0)
        self.interval = _validate.positive_int(interval, "interval")

    def __call__(self, epoch, lr0):
        return lr0 / (1.0 + self.decay_rate * (epoch // self.interval))


class ExponentialDecay(Schedule):
    """``lr0 * rate ** epoch``."""

    def __init__(self, rate):
        self.rate = _validate.real(rate, "rate", 0.0, low_open=True)

    def __call__(self, epoch, lr0):
        return lr0 * self.rate ** epoch


class CosineDecay(Schedule):
    """``min_lr + 0.5*(lr0 - min_lr)*(1 + cos(pi * min(epoch, epochs) / epochs))``."""

    def __init__(self, epochs, min_lr=0.0):
        self.epochs = _validate.positive_int(epochs, "epochs")
        self.min_lr = _validate.real(min_lr, "min_lr", 0.0)

    def __call__(self, epoch, lr0):
        e = min(epoch, self.epochs)
        return self.min_lr + 0.5 * (lr0 - self.min_lr) * (1.0 + math.cos(math.pi * e / self.epochs))


SCHEDULES = {cls.__name__: cls for cls in
             (InverseTimeDecay, StepInverseTimeDecay, ExponentialDecay, CosineDecay)}


def check(schedule):
    """None or a callable, else TypeError naming ``lr_schedule``."""
    if schedule is not None and not callable(schedule):
        raise TypeError(f"lr_schedule must be callable f(epoch, lr0) -> lr, got {schedule!r}")
    return schedule
