"""Activation functions, forward and derivative, over flat contiguous arrays.

``activation_forward(Z, A, code)``: ``A = f(Z)`` elementwise (A is written).
``activation_backward(Z, A, D, code)``: ``D *= f'(Z)`` in place, using the
stored output ``A`` where the maths allows (tanh: 1-A^2, sigmoid: A(1-A),
relu family: sign of A) and ``Z`` only where it must (gelu, softplus).
Both work on 1-D views of the feature-major (units, rows) blocks, so the
loops are flat and vectorise; the code is tested once, outside the loop.
"""

import math

from .codes import ELU, GELU, IDENTITY, LEAKY_RELU, RELU, SELU, SIGMOID, SOFTPLUS, TANH
from .config import kernel
from .mathfn import fast_exp, fast_sigmoid, fast_tanh

LEAKY_SLOPE = 0.01
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
INV_SQRT2 = 0.70710678118654752440
INV_SQRT_2PI = 0.39894228040143267794


@kernel
def activation_forward(Z, A, code):
    """A[i] = f(Z[i]) for 1-D arrays of equal length (A may be Z)."""
    n = Z.shape[0]
    one = Z.dtype.type(1.0)
    zero = Z.dtype.type(0.0)
    if code == IDENTITY:
        for i in range(n):
            A[i] = Z[i]
    elif code == TANH:
        for i in range(n):
            A[i] = fast_tanh(Z[i])
    elif code == SIGMOID:
        for i in range(n):
            A[i] = fast_sigmoid(Z[i])
    elif code == RELU:
        for i in range(n):
            z = Z[i]
            A[i] = z if z > zero else zero
    elif code == LEAKY_RELU:
        slope = Z.dtype.type(LEAKY_SLOPE)
        for i in range(n):
            z = Z[i]
            A[i] = z if z > zero else slope * z
    elif code == ELU:
        for i in range(n):
            z = Z[i]
            A[i] = z if z > zero else fast_exp(z if z < zero else zero) - one
    elif code == SELU:
        scale = Z.dtype.type(SELU_SCALE)
        sa = Z.dtype.type(SELU_SCALE * SELU_ALPHA)
        for i in range(n):
            z = Z[i]
            A[i] = scale * z if z > zero else sa * (fast_exp(z if z < zero else zero) - one)
    elif code == GELU:
        for i in range(n):
            z = Z[i]
            A[i] = 0.5 * z * (1.0 + math.erf(z * INV_SQRT2))
    elif code == SOFTPLUS:
        for i in range(n):
            z = Z[i]
            A[i] = (z if z > zero else zero) + math.log1p(math.exp(-abs(z)))


@kernel
def activation_backward(Z, A, D, code):
    """D[i] *= f'(Z[i]) in place, given Z and A = f(Z) (1-D, equal length)."""
    n = Z.shape[0]
    one = Z.dtype.type(1.0)
    zero = Z.dtype.type(0.0)
    if code == IDENTITY:
        return
    elif code == TANH:
        for i in range(n):
            a = A[i]
            D[i] *= one - a * a
    elif code == SIGMOID:
        for i in range(n):
            a = A[i]
            D[i] *= a * (one - a)
    elif code == RELU:
        for i in range(n):
            D[i] = D[i] if A[i] > zero else zero
    elif code == LEAKY_RELU:
        slope = Z.dtype.type(LEAKY_SLOPE)
        for i in range(n):
            D[i] = D[i] if Z[i] > zero else slope * D[i]
    elif code == ELU:
        for i in range(n):
            D[i] = D[i] if Z[i] > zero else D[i] * (A[i] + one)
    elif code == SELU:
        scale = Z.dtype.type(SELU_SCALE)
        sa = Z.dtype.type(SELU_SCALE * SELU_ALPHA)
        for i in range(n):
            D[i] = scale * D[i] if Z[i] > zero else D[i] * (A[i] + sa)
    elif code == GELU:
        for i in range(n):
            z = Z[i]
            cdf = 0.5 * (1.0 + math.erf(z * INV_SQRT2))
            pdf = INV_SQRT_2PI * math.exp(-0.5 * z * z)
            D[i] *= cdf + z * pdf
    elif code == SOFTPLUS:
        for i in range(n):
            D[i] *= fast_sigmoid(Z[i])
