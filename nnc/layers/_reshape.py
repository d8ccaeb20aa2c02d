"""Flatten: (n, *shape) -> (n, prod(shape)) as a view of the input; backward reshapes dY back.

No workspace and no copy.  Because its output aliases its input, Flatten declares
``inplace_capable`` only so that the network tells it (through ``inplace``) whether its input buffer
may be overwritten by later layers; its own ``output_reusable`` is then exactly that answer.  As a
first layer (input = the user's array) its output is never handed out for in-place work.
"""
from nnc.layers._base import Layer, _checked_size


class Flatten(Layer):
    """Flatten every sample to one dimension (a view: no data is copied)."""

    inplace_capable = True

    @property
    def output_reusable(self):
        return bool(self.inplace)

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        # exact (no wrap-around to 0) and at most 2**31 - 1 values
        self.output_shape = (_checked_size(self.input_shape, "Flatten: a sample"),)
        return self.output_shape

    def _forward(self, X, training):
        return X.reshape((X.shape[0],) + self.output_shape)

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        return dY.reshape((dY.shape[0],) + self.input_shape)
