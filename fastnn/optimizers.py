"""Optimizers: small validated objects that become a kernel code and a
hyper-parameter vector. The update maths is in ``kernels/optimizers.py``;
the state (flat arrays beside the parameters) lives in the model."""

import numpy as np

from . import _validate
from .kernels import codes


class Optimizer:
    code = None
    n_state = 1          # number of flat state arrays used (1 or 2)

    def __init__(self, lr):
        self.lr = _validate.real(lr, "lr", 0.0, low_open=True)

    def _hyper(self, lr):
        hp = np.zeros(codes.H_COLS)
        hp[codes.H_LR] = lr
        return hp

    def get_config(self):
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """``v = momentum*v - lr*g; w += v`` (Nesterov: ``w += momentum*v - lr*g``)."""
    code = codes.SGD

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum = _validate.real(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _hyper(self, lr):
        hp = super()._hyper(lr)
        hp[codes.H_BETA1] = self.momentum
        hp[codes.H_NESTEROV] = float(self.nesterov)
        return hp


class Momentum(Optimizer):
    """Moving-average momentum: ``v = beta*v + (1-beta)*g; w -= lr*v``."""
    code = codes.MOMENTUM

    def __init__(self, lr=0.01, beta=0.9):
        super().__init__(lr)
        self.beta = _validate.real(beta, "beta", 0.0, 1.0, high_open=True)

    def _hyper(self, lr):
        hp = super()._hyper(lr)
        hp[codes.H_BETA1] = self.beta
        return hp


class RMSProp(Optimizer):
    """``s = rho*s + (1-rho)*g^2; w -= lr*g/(sqrt(s)+eps)``."""
    code = codes.RMSPROP

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8):
        super().__init__(lr)
        self.rho = _validate.real(rho, "rho", 0.0, 1.0, high_open=True)
        self.eps = _validate.real(eps, "eps", 0.0, low_open=True)

    def _hyper(self, lr):
        hp = super()._hyper(lr)
        hp[codes.H_BETA1] = self.rho
        hp[codes.H_EPS] = self.eps
        return hp


class Adam(Optimizer):
    """Adam with bias correction, ``t`` counted in minibatch steps:
    ``w -= lr * mhat / (sqrt(vhat) + eps)``."""
    code = codes.ADAM
    n_state = 2

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1 = _validate.real(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = _validate.real(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = _validate.real(eps, "eps", 0.0, low_open=True)

    def _hyper(self, lr):
        hp = super()._hyper(lr)
        hp[codes.H_BETA1] = self.beta1
        hp[codes.H_BETA2] = self.beta2
        hp[codes.H_EPS] = self.eps
        return hp


class AdamW(Adam):
    """Adam plus decoupled weight decay of weight matrices (not biases):
    ``w -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * w)``."""
    code = codes.ADAMW

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps)
        self.weight_decay = _validate.real(weight_decay, "weight_decay", 0.0)

    def _hyper(self, lr):
        hp = super()._hyper(lr)
        hp[codes.H_DECAY] = self.weight_decay
        return hp


class _AdamSK(Adam):
    """scikit-learn's Adam (bias correction folded into the step size)."""
    code = codes.ADAM_SK


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSProp, "adam": Adam,
              "adamw": AdamW}


def get(value):
    """An optimizer instance from an instance or a name (default settings)."""
    if isinstance(value, Optimizer):
        return value
    if isinstance(value, str):
        try:
            return OPTIMIZERS[value.lower()]()
        except KeyError:
            raise ValueError(f"optimizer={value!r} is not a known optimizer; "
                             f"choose from {sorted(OPTIMIZERS)}") from None
    raise TypeError(f"optimizer must be an Optimizer or a name, got {type(value).__name__}")
