"""Flatten: (n, *shape) -> (n, prod(shape)) as a view of the input; backward reshapes dY back.

No workspace and no copy.  Because its output aliases its input, Flatten declares
``inplace_capable`` only so that the network tells it (through ``inplace``) whether its input buffer
may be overwritten by later layers; its own ``output_reusable`` is then exactly that answer.  As a
first layer (input = the user's array) its output is never handed out for in-place work.
"""
import numpy as np

from nnc.layers._base import Layer


class Flatten(Layer):
    """Flatten every sample to one dimension (a view: no data is copied)."""

    inplace_capable = True

    @property
    def output_reusable(self):
        return bool(self.inplace)

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        self.output_shape = (int(np.prod(self.input_shape)),)
        return self.output_shape

    def forward(self, X, training=False):
        return X.reshape((X.shape[0],) + self.output_shape)

    def backward(self, dY, need_dX=True):
        if not need_dX:
            return None
        return dY.reshape((dY.shape[0],) + self.input_shape)
