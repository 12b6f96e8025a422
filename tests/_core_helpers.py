"""Shared helpers for the core tests: run the compiled path on one batch, and
mirror a fastnn model as a fastnn.reference model with the same weights."""

import numpy as np

import fastnn as fnn
from fastnn import reference as ref
from fastnn.kernels.losses import loss_grad
from fastnn.kernels.network import input_rows, network_backward, network_forward
from fastnn.kernels.optimizers import add_l2
from fastnn.trainer import _Buffers

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
               "softplus"]


def compiled_loss_and_grads(model, X, T, sw=None, step=1):
    """(loss, grads, dropout masks) of one training-mode batch through the
    kernels, without updating anything (BatchNorm running stats on a copy)."""
    n, d = X.shape
    buf = _Buffers(model, n)
    layout = X if input_rows(model._spec, model._use_blas) else X.T   # see network.py
    buf.acts[:n * d] = np.ascontiguousarray(layout, model.dtype).ravel()
    state = model._state.copy()
    out = network_forward(model._spec, model._fspec, model._params, state, buf.bnbuf,
                          buf.acts, buf.work, n, True, model._use_blas, model.seed, step, 0, n)
    k = model.n_outputs
    Tt = np.ascontiguousarray(T.T, model.dtype).ravel()
    w = np.zeros(8 * n, model.dtype)
    if sw is not None:
        w[:n] = sw
    loss, _ = loss_grad(buf.acts, out, Tt, 0, w, sw is not None, k, n, model._loss_code,
                        buf.d0, 0)
    network_backward(model._spec, model._fspec, model._params, buf.grads, buf.bnbuf,
                     buf.acts, buf.work, n, model._use_blas, buf.d0, buf.d1)
    if model.l2:
        loss += add_l2(model._spec, model._params, buf.grads, model._wmask, model.l2)
    masks = {}
    for l, layer in enumerate(model.layers):
        if isinstance(layer, fnn.Dropout):
            z = model._spec[l, 7] * n
            w_ = model._spec[l, 2]
            masks[l] = (buf.work[z:z + n * w_].reshape(w_, n).T > 0)
    return float(loss), buf.grads.copy(), masks


def to_reference(model, masks=None):
    """A fastnn.reference.Model with copies of ``model``'s current weights
    (``masks``: fixed Dropout masks by layer index; see ``ref.from_model``)."""
    return ref.from_model(model, masks)


def _flatten(ref_model, arrays):
    """``arrays(layer)`` of every reference layer, in fastnn's flat-buffer order
    (a reference Dense keeps a zero bias even without one; fastnn has none)."""
    parts = []
    for layer in ref_model.layers:
        picked = arrays(layer)
        if isinstance(layer, ref.Dense) and not layer.use_bias:
            picked = picked[:1]
        parts += [a.ravel() for a in picked]
    return np.concatenate(parts) if parts else np.zeros(0)


def reference_flat(ref_model):
    """The reference model's parameters in fastnn's flat-buffer order."""
    return _flatten(ref_model, lambda layer: layer.params())


def reference_flat_grads(ref_model):
    """The reference model's gradients, in the same order."""
    return _flatten(ref_model, lambda layer: layer.grads())


def reference_optimizer(opt):
    """The reference optimizer with ``opt``'s settings (``ref.from_optimizer``)."""
    return ref.from_optimizer(opt)


def targets(loss, rng, n, k, dtype):
    """A float target matrix and the y that fit takes, for ``loss``."""
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, k, n)
        y[:min(n, k)] = np.arange(min(n, k))
        return np.eye(k, dtype=dtype)[y], y
    if loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n, k))
        return y.astype(dtype), (y if k > 1 else y[:, 0])
    if loss == "half_poisson":
        y = rng.poisson(1.5, size=(n, k)).astype(float)
        return y.astype(dtype), y
    y = rng.normal(size=(n, k))
    return y.astype(dtype), y
