"""Plain NumPy reference implementation of fastnn's maths.

This module is the oracle for the compiled kernels and the baseline in the
benchmarks. It imports NumPy and the standard library only and is written to
be read: every layer keeps its forward and backward pass side by side.

Conventions
-----------
* A batch ``X`` has shape ``(n, in)``; a :class:`Dense` layer has ``W`` of
  shape ``(in, out)`` and ``b`` of shape ``(out,)``; ``Z = X @ W + b`` and
  ``A = f(Z)``.
* Every array stays in the dtype of the parameters (float32 or float64);
  scalars such as ``lr`` are Python floats, which NumPy >= 2 does not upcast.
* Losses take the *raw* outputs of the last layer (logits) and apply the link
  (softmax / sigmoid) themselves. As in fastnn, a :class:`Model` whose last
  :class:`Dense` has ``activation="softmax"`` (loss ``softmax_cross_entropy``
  only) or ``"sigmoid"`` with ``binary_cross_entropy`` fuses that activation
  into the loss: the layer is marked ``fused``, applies no activation, and
  ``Model.forward`` returns logits. Any other output activation is applied.
* Random streams follow fastnn's: ``Model.fit(seed=s)`` shuffles with
  ``default_rng([s, 1])`` and a :class:`Dropout` given the model seed and its
  layer index draws fastnn's counter-based mask (:func:`dropout_keep`).
"""

import math
from dataclasses import dataclass

import numpy as np

# === Activations: f(z) and f'(z), both elementwise and dtype preserving

SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
LEAKY_SLOPE = 0.01

_erf = np.frompyfunc(math.erf, 1, 1)  # NumPy has no erf; math.erf works in float64


def sigmoid(z):
    """Stable logistic 1/(1+exp(-z)): exp is only taken of -|z| <= 0."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(Z):
    """Row-wise softmax of Z (n, k), computed after subtracting the row max."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _normal_cdf(z):
    """Phi(z) = 0.5*(1 + erf(z/sqrt(2))), returned in z's dtype."""
    return (0.5 * (1 + _erf(z / math.sqrt(2)))).astype(z.dtype)


def _sigmoid_grad(z):
    s = sigmoid(z)
    return s * (1 - s)


def _step(z, neg, pos=1.0):
    """Elementwise ``pos if z > 0 else neg`` in z's dtype (neg may be an array)."""
    return np.where(z > 0, pos, neg).astype(z.dtype, copy=False)


ACTIVATIONS = {
    # name: (f, f')
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
    "sigmoid": (sigmoid, _sigmoid_grad),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: _step(z, 0.0)),
    "leaky_relu": (lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
                   lambda z: _step(z, LEAKY_SLOPE)),
    # exp(z)-1 is written expm1(z); min(z, 0) keeps exp from overflowing.
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z: _step(z, np.exp(np.minimum(z, 0)))),
    "selu": (lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0))),
             lambda z: _step(z, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(z, 0)), SELU_SCALE)),
    # exact GELU: z*Phi(z); derivative Phi(z) + z*phi(z)
    "gelu": (lambda z: z * _normal_cdf(z),
             lambda z: _normal_cdf(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    # log(1+exp(z)) = max(z,0) + log1p(exp(-|z|)); derivative sigmoid(z)
    "softplus": (lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), sigmoid),
}

ACTIVATION_ALIASES = {"linear": "identity", "logistic": "sigmoid"}

# Not elementwise, so not in the table: a Dense layer may still use it (on the
# last layer of a Model it is fused into softmax_cross_entropy).
SOFTMAX = "softmax"

# Activations whose "auto" initialisation is he_uniform (glorot_uniform otherwise).
RELU_FAMILY = {"relu", "leaky_relu", "elu", "selu", "gelu"}


def resolve_activation(name):
    """Canonical activation name for ``name`` (aliases allowed); ValueError if unknown."""
    name = ACTIVATION_ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        known = sorted(ACTIVATIONS) + sorted(ACTIVATION_ALIASES)
        raise ValueError(f"unknown activation {name!r}; expected one of {known}")
    return name


def activation(name, z):
    """f(z) for the activation called ``name``."""
    return ACTIVATIONS[resolve_activation(name)][0](z)


def activation_grad(name, z):
    """f'(z), the derivative of activation ``name`` evaluated at z."""
    return ACTIVATIONS[resolve_activation(name)][1](z)


# === Losses: (Z, T, sample_weight=None) -> (loss, dZ)
# Per-row loss l_i; batch loss = sum_i c_i * l_i with c_i = w_i / sum(w)
# (c_i = 1/n without weights); dZ is the gradient of that batch loss.

def _row_coefficients(Z, sample_weight):
    """Column c (n, 1) of row coefficients w_i/sum(w), or 1/n, in Z's dtype."""
    n = Z.shape[0]
    if sample_weight is None:
        return np.full((n, 1), 1 / n, dtype=Z.dtype)
    w = np.asarray(sample_weight, dtype=Z.dtype).reshape(n, 1)
    return w / w.sum()


def softmax_cross_entropy(Z, T, sample_weight=None):
    """l_i = -sum_j T_ij log softmax(Z)_ij; dZ_i = c_i (p_i sum_j T_ij - T_i)."""
    c = _row_coefficients(Z, sample_weight)
    S = Z - Z.max(axis=1, keepdims=True)
    log_p = S - np.log(np.exp(S).sum(axis=1, keepdims=True))
    loss_rows = -(T * log_p).sum(axis=1)
    dZ = (np.exp(log_p) * T.sum(axis=1, keepdims=True) - T) * c
    return float(c[:, 0] @ loss_rows), dZ


def binary_cross_entropy(Z, T, sample_weight=None):
    """l_i = sum_j [max(z,0) - z t + log1p(exp(-|z|))]; dZ = c_i (sigmoid(Z) - T)."""
    c = _row_coefficients(Z, sample_weight)
    L = np.maximum(Z, 0) - Z * T + np.log1p(np.exp(-np.abs(Z)))
    dZ = (sigmoid(Z) - T) * c
    return float(c[:, 0] @ L.sum(axis=1)), dZ


def mse(Z, T, sample_weight=None):
    """l_i = mean_j (Z_ij - T_ij)^2; dZ = c_i * 2 (Z - T) / k."""
    c = _row_coefficients(Z, sample_weight)
    D = Z - T
    dZ = (2 / Z.shape[1]) * D * c
    return float(c[:, 0] @ (D * D).mean(axis=1)), dZ


def half_mse(Z, T, sample_weight=None):
    """Half of :func:`mse` (scikit-learn's squared loss): l_i = 0.5 mean_j (Z-T)^2."""
    c = _row_coefficients(Z, sample_weight)
    D = Z - T
    dZ = (1 / Z.shape[1]) * D * c
    return float(c[:, 0] @ (0.5 * (D * D).mean(axis=1))), dZ


def half_poisson(Z, T, sample_weight=None):
    """scikit-learn's half Poisson deviance with a log link, summed over outputs:
    l_i = sum_j exp(z) - t z + t log t - t (0 log 0 = 0); dZ = exp(Z) - T."""
    P = np.exp(Z)
    TlogT = np.where(T > 0, T * np.log(np.where(T > 0, T, 1)), 0).astype(Z.dtype)
    per_row = (P - T * Z + TlogT - T).sum(axis=1)
    c = _row_coefficients(Z, sample_weight)
    return float(np.sum(c[:, 0] * per_row)), (P - T) * c


LOSSES = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "mse": mse,
    "half_mse": half_mse,
    "half_poisson": half_poisson,
}


# === Initialisation

def init_weights(rng, fan_in, fan_out, init, dtype, activation="identity"):
    """A (fan_in, fan_out) weight matrix drawn in float64 from Generator ``rng``.

    glorot_uniform U(-l, l), l = sqrt(6/(fan_in+fan_out)); glorot_normal
    N(0, sqrt(2/(fan_in+fan_out))); he_uniform l = sqrt(6/fan_in);
    he_normal N(0, sqrt(2/fan_in)); "auto" is he_uniform for ``activation``
    in RELU_FAMILY, glorot_uniform otherwise. The result is cast to ``dtype``.

    fastnn's ``Sequential(seed=s)`` draws its initial weights this way: one
    ``default_rng(s)``, each Dense layer's W in layer order. Biases and
    BatchNorm (gamma 1, beta 0, running mean 0, running var 1) and Dropout
    draw nothing.
    """
    if init == "auto":
        activation = ACTIVATION_ALIASES.get(activation, activation)
        init = "he_uniform" if activation in RELU_FAMILY else "glorot_uniform"
    family, _, dist = init.partition("_")
    fan = {"glorot": fan_in + fan_out, "he": fan_in}.get(family)
    if fan is None or dist not in ("uniform", "normal"):
        raise ValueError(f"unknown init {init!r}; expected auto, glorot_uniform, "
                         "glorot_normal, he_uniform or he_normal")
    if dist == "uniform":
        limit = math.sqrt(6 / fan)
        W = rng.uniform(-limit, limit, size=(fan_in, fan_out))
    else:
        W = rng.normal(0.0, math.sqrt(2 / fan), size=(fan_in, fan_out))
    return W.astype(dtype)


# === Layers

class Dense:
    """Z = X @ W + b, A = f(Z). W (in, out), b (out,); params [W, b].

    ``b=None`` creates a zero bias. With ``use_bias=False`` the bias is still
    stored (and listed in params) but its gradient is always zero, so any
    optimizer leaves it at its value (zero). ``activation="softmax"`` gives
    row softmaxes; it has no backward of its own unless ``fused``. A
    :class:`Model` sets ``fused`` on a last layer whose activation its loss
    applies (see the module notes): that layer then returns A = Z.
    """

    def __init__(self, W, b=None, activation="identity", use_bias=True):
        self.W = W
        self.b = np.zeros(W.shape[1], dtype=W.dtype) if b is None else b
        self.activation = activation if activation == SOFTMAX else resolve_activation(activation)
        self.use_bias = use_bias
        self.fused = False
        self.is_weight = [True, False]
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def params(self):
        return [self.W, self.b]

    def grads(self):
        return [self.dW, self.db]

    def applied_activation(self):
        """The activation this layer applies: identity when fused into the loss."""
        return "identity" if self.fused else self.activation

    def forward(self, X, training=False):
        self.X = X
        self.Z = X @ self.W + self.b
        name = self.applied_activation()
        if name == SOFTMAX:
            return softmax(self.Z)
        return ACTIVATIONS[name][0](self.Z)

    def backward(self, dA):
        """dZ = dA * f'(Z); dW = X^T dZ; db = sum_rows dZ; returns dX = dZ W^T."""
        name = self.applied_activation()
        if name == SOFTMAX:
            raise ValueError("Dense: a 'softmax' activation is only differentiated fused "
                             "into loss 'softmax_cross_entropy', as the last layer of a Model")
        dZ = dA * ACTIVATIONS[name][1](self.Z)
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0) if self.use_bias else np.zeros_like(self.b)
        return dZ @ self.W.T


class BatchNorm:
    """Y = gamma * (X - mu) / sqrt(var + eps) + beta, per feature; params [gamma, beta].

    Training uses the (unweighted, biased) batch mean and variance and updates
    ``running_mean``/``running_var`` in place: r = momentum*r + (1-momentum)*stat.
    Inference uses the running statistics.
    """

    def __init__(self, gamma, beta, running_mean, running_var, momentum=0.9, eps=1e-5):
        self.gamma, self.beta = gamma, beta
        self.running_mean, self.running_var = running_mean, running_var
        self.momentum, self.eps = momentum, eps
        self.is_weight = [False, False]
        self.dgamma, self.dbeta = np.zeros_like(gamma), np.zeros_like(beta)

    def params(self):
        return [self.gamma, self.beta]

    def grads(self):
        return [self.dgamma, self.dbeta]

    def forward(self, X, training=False):
        if not training:
            xhat = (X - self.running_mean) / np.sqrt(self.running_var + self.eps)
            return self.gamma * xhat + self.beta
        mu = X.mean(axis=0)
        var = ((X - mu) ** 2).mean(axis=0)
        m = self.momentum
        self.running_mean[...] = m * self.running_mean + (1 - m) * mu
        self.running_var[...] = m * self.running_var + (1 - m) * var
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.xhat = (X - mu) * self.inv_std
        return self.gamma * self.xhat + self.beta

    def backward(self, dY):
        """dX = inv_std/n * (n dxhat - sum(dxhat) - xhat sum(dxhat xhat)), dxhat = dY gamma."""
        n = dY.shape[0]
        self.dgamma = (dY * self.xhat).sum(axis=0)
        self.dbeta = dY.sum(axis=0)
        dxhat = dY * self.gamma
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0)
                                     - self.xhat * (dxhat * self.xhat).sum(axis=0))


# fastnn's dropout mask (kernels/norm.py): a counter-based hash, so the mask of
# an element depends only on (seed, step, layer, row, unit), never on threads.
U64 = 2**64 - 1                 # arithmetic mod 2**64 (uint64 arrays wrap by themselves)
GOLDEN = 0x9E3779B97F4A7C15     # the seed's and the element index's multiplier
STEP_MUL = 0xD1B54A32D192ED03
LAYER_MUL = 0x8CB92BA72F3D8DD7


def mix64(x):
    """splitmix64 finaliser of x: a Python int in [0, 2**64) or a uint64 array."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & U64
    return x ^ (x >> 31)


def dropout_keep(seed, step, layer, shape, rate):
    """fastnn's Dropout mask: a bool (n, width) array, True where kept.

    For row i of the n-row batch and unit j, at training step ``step`` (1 for
    the first batch ever) of the layer at index ``layer`` in a model with
    ``seed``:  base = mix64(seed*GOLDEN + step*STEP_MUL + layer*LAYER_MUL),
    h = mix64(base + (j*n + i)*GOLDEN) (all mod 2**64), u = (h >> 11) / 2**53,
    kept iff u >= rate.
    """
    n, width = shape
    seed, step, layer = int(seed), int(step), int(layer)    # Python ints: no overflow
    base = mix64((seed * GOLDEN + step * STEP_MUL + layer * LAYER_MUL) & U64)
    i = np.arange(n, dtype=np.uint64)[:, None]
    j = np.arange(width, dtype=np.uint64)[None, :]
    h = mix64(base + (j * n + i) * GOLDEN)
    u = (h >> 11).astype(np.float64) * 2.0**-53
    return u >= rate


class Dropout:
    """Training: Y = X * mask / (1 - rate) with a 0/1 mask; inference: Y = X.

    The mask is, in order of preference, the ``mask=`` argument of
    :meth:`forward`, the attribute ``fixed_mask`` (if not None), fastnn's
    mask :func:`dropout_keep` when ``layer`` (this layer's index in the
    model, ``seed`` the model's seed) is given (the :class:`Model` passes
    the ``step``), or else a fresh draw ``rng.random(X.shape) >= rate`` from
    this layer's own Generator ``default_rng(seed)``.
    """

    def __init__(self, rate, seed=None, fixed_mask=None, layer=None):
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
        if layer is not None and seed is None:
            raise ValueError("Dropout: fastnn's mask (layer given) needs the model's seed")
        self.rate = rate
        self.seed, self.layer = seed, layer
        self.rng = np.random.default_rng(seed) if layer is None else None
        self.fixed_mask = fixed_mask
        self.is_weight = []

    def params(self):
        return []

    def grads(self):
        return []

    def forward(self, X, training=False, mask=None, step=None):
        if not training:
            self.scale = None
            return X
        if mask is None:
            mask = self.fixed_mask
        if mask is None and self.layer is not None:
            if step is None:
                raise ValueError("Dropout: fastnn's mask needs the training step "
                                 "(1 for the first batch)")
            mask = dropout_keep(self.seed, step, self.layer, X.shape, self.rate)
        if mask is None:
            mask = self.rng.random(X.shape) >= self.rate
        self.scale = np.asarray(mask, dtype=X.dtype) / (1 - self.rate)
        return X * self.scale

    def backward(self, dY):
        return dY if self.scale is None else dY * self.scale


# === Optimizers: step(params, grads, is_weight) updates params in place

class Optimizer:
    """Base class. State (per position in the params list) is created lazily
    as zeros; ``t`` counts steps and is incremented before each update."""

    n_slots = 0

    def __init__(self, lr):
        self.lr = lr
        self.t = 0
        self.state = []  # state[i] = list of n_slots arrays for params[i]

    def step(self, params, grads, is_weight):
        self.t += 1
        if not self.state:
            self.state = [[np.zeros_like(p) for _ in range(self.n_slots)] for p in params]
        lr = float(self.lr)
        for p, g, w, slots in zip(params, grads, is_weight, self.state):
            self.update(p, g, w, slots, lr)

    def update(self, p, g, is_weight, slots, lr):
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum v - lr g; w += v, or w += momentum v - lr g (Nesterov)."""

    n_slots = 1

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, p, g, is_weight, slots, lr):
        v = slots[0]
        v[...] = self.momentum * v - lr * g
        p += self.momentum * v - lr * g if self.nesterov else v


class Momentum(Optimizer):
    """v = beta v + (1 - beta) g; w -= lr v."""

    n_slots = 1

    def __init__(self, lr=0.01, beta=0.9):
        super().__init__(lr)
        self.beta = beta

    def update(self, p, g, is_weight, slots, lr):
        v = slots[0]
        v[...] = self.beta * v + (1 - self.beta) * g
        p -= lr * v


class RMSProp(Optimizer):
    """s = rho s + (1 - rho) g^2; w -= lr g / (sqrt(s) + eps)."""

    n_slots = 1

    def __init__(self, lr=0.001, rho=0.9, eps=1e-8):
        super().__init__(lr)
        self.rho, self.eps = rho, eps

    def update(self, p, g, is_weight, slots, lr):
        s = slots[0]
        s[...] = self.rho * s + (1 - self.rho) * g * g
        p -= lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t);
    vhat = v/(1-b2^t); w -= lr * mhat / (sqrt(vhat) + eps)."""

    n_slots = 2

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def moments(self, g, slots):
        """Update and return the first and second moment estimates m, v."""
        m, v = slots
        m[...] = self.beta1 * m + (1 - self.beta1) * g
        v[...] = self.beta2 * v + (1 - self.beta2) * g * g
        return m, v

    def direction(self, p, m, v, is_weight):
        """The bias-corrected Adam direction mhat / (sqrt(vhat) + eps)."""
        mhat = m / (1 - self.beta1 ** self.t)
        vhat = v / (1 - self.beta2 ** self.t)
        return mhat / (np.sqrt(vhat) + self.eps)

    def update(self, p, g, is_weight, slots, lr):
        m, v = self.moments(g, slots)
        p -= lr * self.direction(p, m, v, is_weight)


class AdamW(Adam):
    """Adam with decoupled weight decay on weight matrices only:
    w -= lr * (mhat/(sqrt(vhat)+eps) + weight_decay * w)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps)
        self.weight_decay = weight_decay

    def direction(self, p, m, v, is_weight):
        d = super().direction(p, m, v, is_weight)
        return d + self.weight_decay * p if is_weight else d


class AdamSK(Adam):
    """scikit-learn's Adam: lr_t = lr sqrt(1-b2^t)/(1-b1^t); w -= lr_t m/(sqrt(v)+eps)."""

    def update(self, p, g, is_weight, slots, lr):
        m, v = self.moments(g, slots)
        lr_t = lr * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        p -= lr_t * m / (np.sqrt(v) + self.eps)


# === Learning-rate schedules: schedule(epoch, lr0) -> lr, epoch counted from 0

@dataclass
class InverseTimeDecay:
    """lr0 / (1 + decay_rate * epoch)."""
    decay_rate: float

    def __call__(self, epoch, lr0):
        return lr0 / (1 + self.decay_rate * epoch)


@dataclass
class StepInverseTimeDecay:
    """lr0 / (1 + decay_rate * floor(epoch / interval))."""
    decay_rate: float
    interval: int

    def __call__(self, epoch, lr0):
        return lr0 / (1 + self.decay_rate * math.floor(epoch / self.interval))


@dataclass
class ExponentialDecay:
    """lr0 * rate ** epoch."""
    rate: float

    def __call__(self, epoch, lr0):
        return lr0 * self.rate ** epoch


@dataclass
class CosineDecay:
    """min_lr + 0.5 (lr0 - min_lr)(1 + cos(pi min(epoch, epochs) / epochs))."""
    epochs: int
    min_lr: float = 0.0

    def __call__(self, epoch, lr0):
        frac = min(epoch, self.epochs) / self.epochs
        return self.min_lr + 0.5 * (lr0 - self.min_lr) * (1 + math.cos(math.pi * frac))


# === Model

class Model:
    """A stack of layers and a loss (a name in LOSSES).

    Total batch loss = data loss + 0.5 * l2 * sum ||W||^2 over Dense weight
    matrices; with ``l2_per_row`` the coefficient is l2 / n_batch_rows.
    A last Dense with softmax (loss softmax_cross_entropy only) or with
    sigmoid and binary_cross_entropy is fused into the loss, as in fastnn.
    ``step`` counts training steps (``train_step`` calls, 0 at the start);
    Dropout layers draw the masks of step ``step + 1``.
    """

    def __init__(self, layers, loss, l2=0.0, l2_per_row=False):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        self.layers, self.loss, self.loss_fn = list(layers), loss, LOSSES[loss]
        self.l2, self.l2_per_row = l2, l2_per_row
        self.step = 0
        self._fuse_output()

    def _fuse_output(self):
        """Allow softmax on the last layer only, with softmax cross-entropy, and
        mark a last Dense whose activation the loss applies as ``fused``."""
        for i, layer in enumerate(self.layers[:-1]):
            if isinstance(layer, Dense) and layer.activation == SOFTMAX:
                raise ValueError(f"layers[{i}]: activation='softmax' is only allowed on the "
                                 "last layer, with loss='softmax_cross_entropy'")
        last = self.layers[-1] if self.layers else None
        if not isinstance(last, Dense):
            return
        if last.activation == SOFTMAX and self.loss != "softmax_cross_entropy":
            raise ValueError(f"loss={self.loss!r}: a final 'softmax' activation needs "
                             "loss='softmax_cross_entropy'")
        last.fused = (last.activation == SOFTMAX
                      or (last.activation == "sigmoid" and self.loss == "binary_cross_entropy"))

    def params(self):
        return [p for layer in self.layers for p in layer.params()]

    def grads(self):
        return [g for layer in self.layers for g in layer.grads()]

    def is_weight(self):
        return [w for layer in self.layers for w in layer.is_weight]

    def forward(self, X, training=False):
        """Output of the last layer (logits / raw outputs), shape (n, k)."""
        for layer in self.layers:
            if isinstance(layer, Dropout):
                X = layer.forward(X, training, step=self.step + 1)
            else:
                X = layer.forward(X, training)
        return X

    def loss_and_grads(self, X, T, sample_weight=None):
        """Training-mode forward and backward; returns the total loss (float)
        and leaves every layer's grads (weights' including l2 * W) in place."""
        Z = self.forward(X, training=True)
        loss, dA = self.loss_fn(Z, T, sample_weight)
        for layer in reversed(self.layers):
            dA = layer.backward(dA)
        if self.l2:
            coef = self.l2 / X.shape[0] if self.l2_per_row else self.l2
            for layer in self.layers:
                for p, g, w in zip(layer.params(), layer.grads(), layer.is_weight):
                    if w:
                        loss += 0.5 * coef * float(np.sum(p * p))
                        g += coef * p
        return loss

    def train_step(self, X, T, optimizer, sample_weight=None):
        loss = self.loss_and_grads(X, T, sample_weight)
        optimizer.step(self.params(), self.grads(), self.is_weight())
        self.step += 1
        return loss

    def fit(self, X, T, optimizer, batch_size, epochs, shuffle=True, seed=0,
            schedule=None, sample_weight=None):
        """Minibatch training. Returns {"batch_losses": [...], "epoch_loss": [...]},
        epoch_loss holding one batch-size-weighted mean per epoch.

        Each epoch's order is ``rng.permutation(n)``. For an integer ``seed``,
        rng = default_rng([seed, 1]), made once per call: the orders of the
        first ``fit`` of a fastnn ``Sequential(seed=seed)``. A Generator
        ``seed`` is used (and advanced) as it is; None gives fresh entropy."""
        n = X.shape[0]
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng(None if seed is None else [seed, 1])
        sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        lr0 = optimizer.lr
        batch_losses, epoch_loss = [], []
        for epoch in range(epochs):
            if schedule is not None:
                optimizer.lr = schedule(epoch, lr0)
            order = rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                sw = None if sample_weight is None else sample_weight[idx]
                loss = self.train_step(X[idx], T[idx], optimizer, sw)
                batch_losses.append(loss)
                total += loss * len(idx)
            epoch_loss.append(total / n)
        return {"batch_losses": batch_losses, "epoch_loss": epoch_loss}


# === Mirroring fastnn objects (duck-typed on class names: fastnn is not imported)

def from_model(model, masks=None):
    """A :class:`Model` mirroring a built, compiled fastnn ``Sequential``.

    It holds copies of the current weights, BatchNorm parameters and running
    statistics, the loss, ``l2`` and per-row l2, and Dropout layers drawing
    fastnn's masks (the model's seed, their layer index) unless ``masks``
    maps a layer index to a fixed bool (n, width) mask; ``step`` is the
    number of optimizer steps fastnn has taken (0 for an untrained model).
    """
    if getattr(model, "loss", None) is None or not getattr(model, "_built", False):
        raise ValueError("from_model: the fastnn model must be compiled and built "
                         "(input_dim given, or fitted)")
    masks = {} if masks is None else masks
    layers = []
    for l, layer in enumerate(model.layers):
        kind = type(layer).__name__
        if kind == "Dense":
            b = layer.b.copy() if layer.use_bias else None
            layers.append(Dense(layer.W.copy(), b, layer.activation, layer.use_bias))
        elif kind == "BatchNorm":
            layers.append(BatchNorm(layer.gamma.copy(), layer.beta.copy(),
                                    layer.running_mean.copy(), layer.running_var.copy(),
                                    momentum=layer.momentum, eps=layer.eps))
        elif kind == "Dropout":
            layers.append(Dropout(layer.rate, seed=model.seed, fixed_mask=masks.get(l),
                                  layer=l))
        else:
            raise TypeError(f"from_model: layers[{l}] is a {kind}, not Dense, BatchNorm "
                            "or Dropout")
    mirror = Model(layers, model.loss, l2=model.l2, l2_per_row=model._l2_per_row)
    opt_state = getattr(model, "_opt_state", None)
    mirror.step = 0 if opt_state is None else int(opt_state["t"][0])
    return mirror


def from_optimizer(opt):
    """A fresh reference optimizer (no state, t = 0) with the settings of
    fastnn optimizer ``opt`` (matched by class name)."""
    classes = {"SGD": SGD, "Momentum": Momentum, "RMSProp": RMSProp, "Adam": Adam,
               "AdamW": AdamW, "_AdamSK": AdamSK}
    name = type(opt).__name__
    if name not in classes:
        raise ValueError(f"from_optimizer: no reference optimizer for {name!r}; "
                         f"expected one of {sorted(classes)}")
    return classes[name](**opt.get_config())
