"""Layer specifications. A layer knows its hyper-parameters and, once the
model is built, holds views (``W``, ``b``, ``gamma``, ``beta``) into the
model's flat parameter buffer; the arithmetic lives in ``fastnn.kernels``."""

import numpy as np

from . import _validate, registry


class _Param:
    """A layer attribute that is a view into the model's buffers (``W``,
    ``b``, ``gamma``, ``beta``, ``running_mean``, ``running_var``): ``None``
    until the model is built, then the live view. Assigning to it copies the
    value into the view, so ``layer.W = new`` changes the model as
    ``layer.W[...] = new`` does (a plain attribute would silently replace
    the view and leave the model as it was); the shape must match."""

    def __set_name__(self, owner, name):
        self.name = name
        self.slot = "_" + name

    def __get__(self, layer, owner=None):
        return self if layer is None else layer.__dict__.get(self.slot)

    def __set__(self, layer, value):
        view = layer.__dict__.get(self.slot)
        name = f"{type(layer).__name__}.{self.name}"
        if view is None:
            if self.name == "b" and getattr(layer, "use_bias", True) is False:
                raise ValueError(f"{name} does not exist: the layer has use_bias=False")
            raise ValueError(f"{name} does not exist until the model is built "
                             "(give Sequential an input_dim, or fit it)")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
        if arr.shape != view.shape:
            raise ValueError(f"{name} must have shape {view.shape}, got {arr.shape}")
        view[...] = arr


class Layer:
    kind = None

    def _bind(self, name, view):
        """Point parameter attribute ``name`` at ``view`` (the model's buffer)."""
        self.__dict__["_" + name] = view

    def _param_shapes(self, n_in):
        """[(name, shape, is_weight)] in buffer order."""
        return []

    def _output_width(self, n_in):
        return n_in

    def _config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: ``A = activation(X @ W + b)``, W (in, out)."""
    kind = "dense"
    W = _Param()
    b = _Param()

    def __init__(self, units, activation="identity", init="auto", use_bias=True):
        self.units = _validate.positive_int(units, "units")
        self.activation = registry.activation_name(activation)
        self.init = registry.init_name(init)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"use_bias must be a bool, got {use_bias!r}")
        self.use_bias = bool(use_bias)
        self._bind("W", None)
        self._bind("b", None)

    def _param_shapes(self, n_in):
        shapes = [("W", (n_in, self.units), True)]
        if self.use_bias:
            shapes.append(("b", (self.units,), False))
        return shapes

    def _output_width(self, n_in):
        return self.units

    def _config(self):
        return dict(units=self.units, activation=self.activation, init=self.init,
                    use_bias=self.use_bias)

    def _initial_weights(self, rng, n_in, dtype):
        init = self.init
        if init == "auto":
            init = "he_uniform" if self.activation in registry.RELU_FAMILY else "glorot_uniform"
        fan_in, fan_out = n_in, self.units
        shape = (fan_in, fan_out)
        if init == "glorot_uniform":
            lim = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-lim, lim, shape)
        elif init == "glorot_normal":
            w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
        elif init == "he_uniform":
            lim = np.sqrt(6.0 / fan_in)
            w = rng.uniform(-lim, lim, shape)
        else:
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        return w.astype(dtype)


class BatchNorm(Layer):
    """Batch normalisation with learnable ``gamma``/``beta``; batch statistics
    in training, running statistics (``running_mean``/``running_var``) in
    inference. ``momentum`` weights the old running value."""
    kind = "batchnorm"
    gamma = _Param()
    beta = _Param()
    running_mean = _Param()
    running_var = _Param()

    def __init__(self, momentum=0.9, eps=1e-5):
        self.momentum = _validate.real(momentum, "momentum", 0.0, 1.0)
        self.eps = _validate.real(eps, "eps", 0.0, low_open=True)
        for name in ("gamma", "beta", "running_mean", "running_var"):
            self._bind(name, None)

    def _param_shapes(self, n_in):
        return [("gamma", (n_in,), False), ("beta", (n_in,), False)]

    def _config(self):
        return dict(momentum=self.momentum, eps=self.eps)


class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability
    ``rate`` and the rest scaled by 1/(1-rate); identity in inference."""
    kind = "dropout"

    def __init__(self, rate):
        self.rate = _validate.real(rate, "rate", 0.0, 1.0, high_open=True)

    def _config(self):
        return dict(rate=self.rate)


LAYER_TYPES = {cls.kind: cls for cls in (Dense, BatchNorm, Dropout)}
