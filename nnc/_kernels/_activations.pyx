"""Element-wise activations, in place, with derivatives computed from the outputs.

Forward overwrites Z with f(Z); backward overwrites dZ with dZ * f'(.) where f' is written in
terms of the output Y = f(Z), so no pre-activation copy is kept:
logistic y(1-y), tanh 1-y^2, relu [y>0], leaky_relu [y>0] + slope [y<=0] (slope > 0).
n is the total number of elements (any shape, C-contiguous).
"""
from nnc._kernels._fastmath cimport _sigmoid_array, _tanh_array

# Python-visible codes (mirror the enum in _activations.pxd)
IDENTITY = ACT_IDENTITY
LOGISTIC = ACT_LOGISTIC
TANH = ACT_TANH
RELU = ACT_RELU
LEAKY_RELU = ACT_LEAKY_RELU


cdef void _activation_forward(int act, floating* Z, Py_ssize_t n, floating slope) noexcept nogil:
    """Z <- f(Z) in place."""
    cdef Py_ssize_t i
    if act == ACT_LOGISTIC:
        _sigmoid_array(Z, n)             # vectorised, error bounds in _fastmath.pyx
    elif act == ACT_TANH:
        _tanh_array(Z, n)
    # Branch-free selects vectorise (a data-dependent `if` mispredicts and does not): on
    # 64x8x26x26 float32 (346K elements, the first convolution's output in bench_cnn.py) ReLU
    # takes 30-48 us forward and 35-48 us backward as selects, 1520 and 1580 us written as `if`
    # statements (1 thread; the ReLU line of `python benchmarks/bench_elementwise.py`).
    # `0 if z < 0 else z` also lets NaN through, as PyTorch does.
    elif act == ACT_RELU:
        for i in range(n):
            Z[i] = 0 if Z[i] < 0 else Z[i]
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            Z[i] = Z[i] * slope if Z[i] < 0 else Z[i]


cdef void _activation_backward(int act, const floating* Y, floating* dZ, Py_ssize_t n,
                               floating slope) noexcept nogil:
    """dZ <- dZ * f'(Z), with f' expressed through the output Y = f(Z)."""
    cdef Py_ssize_t i
    if act == ACT_LOGISTIC:
        for i in range(n):
            dZ[i] = dZ[i] * Y[i] * (1 - Y[i])
    elif act == ACT_TANH:
        for i in range(n):
            dZ[i] = dZ[i] * (1 - Y[i] * Y[i])
    elif act == ACT_RELU:
        for i in range(n):
            dZ[i] = dZ[i] if Y[i] > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            dZ[i] = dZ[i] if Y[i] > 0 else dZ[i] * slope


# ---------------------------------------------------------------- Python twins

def activation_forward(int act, floating[::1] Z_out, double slope=0.01):
    """Z_out <- f(Z_out) in place (flattened view of any C-contiguous array)."""
    if act < 0 or act > ACT_LEAKY_RELU:
        raise ValueError(f"unknown activation code {act}")
    if Z_out.shape[0] == 0:
        return
    with nogil:
        _activation_forward(act, &Z_out[0], Z_out.shape[0], <floating>slope)


def activation_backward(int act, const floating[::1] Y, floating[::1] dZ_out, double slope=0.01):
    """dZ_out <- dZ_out * f'(.) computed from outputs Y."""
    if act < 0 or act > ACT_LEAKY_RELU:
        raise ValueError(f"unknown activation code {act}")
    if Y.shape[0] != dZ_out.shape[0]:
        raise ValueError("activation_backward: Y and dZ_out differ in size")
    if Y.shape[0] == 0:
        return
    with nogil:
        _activation_backward(act, &Y[0], &dZ_out[0], Y.shape[0], <floating>slope)
