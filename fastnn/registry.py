"""Names to kernel codes, in one place. Unknown names raise ValueError naming
the argument."""

from .kernels import codes

ACTIVATIONS = {
    "identity": codes.IDENTITY, "linear": codes.IDENTITY,
    "sigmoid": codes.SIGMOID, "logistic": codes.SIGMOID,
    "tanh": codes.TANH,
    "relu": codes.RELU,
    "leaky_relu": codes.LEAKY_RELU,
    "elu": codes.ELU,
    "selu": codes.SELU,
    "gelu": codes.GELU,
    "softplus": codes.SOFTPLUS,
    # accepted on the last layer only, fused with the matching loss
    "softmax": -1,
}
CANONICAL_ACTIVATION = {
    "linear": "identity", "logistic": "sigmoid",
}
RELU_FAMILY = {"relu", "leaky_relu", "elu", "selu", "gelu"}

INITS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal")

LOSSES = {
    "softmax_cross_entropy": codes.SOFTMAX_XENT,
    "binary_cross_entropy": codes.BINARY_XENT,
    "mse": codes.MSE,
    "half_mse": codes.HALF_MSE,     # internal: scikit-learn's squared loss
    "half_poisson": codes.HALF_POISSON,   # internal: scikit-learn's Poisson loss
}
INTERNAL_LOSSES = ("half_mse", "half_poisson")
CLASSIFICATION_LOSSES = ("softmax_cross_entropy", "binary_cross_entropy")

DTYPES = ("float32", "float64")


def _name(value, argument):
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a string, got {type(value).__name__}")
    return value.lower()


def activation_name(value, argument="activation"):
    """The canonical activation name for ``value`` (aliases resolved)."""
    name = _name(value, argument)
    if name not in ACTIVATIONS:
        raise ValueError(f"{argument}={value!r} is not a known activation; "
                         f"choose from {sorted(ACTIVATIONS)}")
    return CANONICAL_ACTIVATION.get(name, name)


def init_name(value, argument="init"):
    name = _name(value, argument)
    if name not in INITS:
        raise ValueError(f"{argument}={value!r} is not a known initializer; "
                         f"choose from {list(INITS)}")
    return name


def loss_name(value, argument="loss"):
    name = _name(value, argument)
    if name not in LOSSES:
        public = [k for k in LOSSES if k not in INTERNAL_LOSSES]
        raise ValueError(f"{argument}={value!r} is not a known loss; choose from {public}")
    return name


def dtype_name(value, argument="dtype"):
    import numpy as np
    try:
        name = np.dtype(value).name
    except TypeError:
        raise TypeError(f"{argument}={value!r} is not a dtype") from None
    if name not in DTYPES:
        raise ValueError(f"{argument}={value!r} is not supported; use 'float32' or 'float64'")
    return name
