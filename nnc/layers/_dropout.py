"""Dropout: inverted dropout in training, identity otherwise.

In training each element is kept with probability 1 - rate and scaled by 1 / (1 - rate), so the
expected output equals the input and inference needs no rescaling.  The uniforms come from the
layer's own ``numpy.random.Generator`` (seeded in ``init_params`` from the network's RandomState, or
from ``random_state``), drawn into a preallocated buffer that the kernel (nnc._kernels._dropout)
turns into the scaled mask in place; backward multiplies dY by that mask in place.

In place: forward reads X[i] and writes Y[i] at the same index and backward needs only the mask, so
the layer may overwrite its input when the network says the producer does not need it
(``inplace``).  Its output aliases its input in that case, and in inference always, so its own
``output_reusable`` is that same answer.
"""
import math
import numbers

import numpy as np

from nnc.layers._base import Layer
from nnc._kernels import _dropout
from nnc._threads import n_threads


class Dropout(Layer):
    """Inverted dropout.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability of zeroing an element in training.
    random_state : int or None, default=None
        Seed of the mask generator.  None: seeded from the network's random_state when the
        network initialises its weights (so a network with a fixed random_state is reproducible).
    """

    inplace_capable = True

    def __init__(self, rate, random_state=None):
        super().__init__()
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
            raise TypeError(f"rate must be a float, got {type(rate).__name__}")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        if random_state is not None and (not isinstance(random_state, numbers.Integral)
                                         or isinstance(random_state, bool)):
            raise TypeError(f"random_state must be an int or None, got {random_state!r}")
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        self.rate = float(rate)
        self.random_state = None if random_state is None else int(random_state)
        self._rng = None

    @property
    def output_reusable(self):
        return bool(self.inplace)

    def init_params(self, rng):
        # always draw, so the other layers' initial weights do not depend on random_state here
        seed = int(rng.randint(0, 2**31 - 1))
        self._rng = np.random.default_rng(seed if self.random_state is None else self.random_state)

    def allocate(self, batch_size):
        super().allocate(batch_size)
        size = batch_size * math.prod(self.input_shape)
        self._ws_mask = np.empty(size, dtype=self.dtype)
        self._ws_out = None if self.inplace else np.empty(size, dtype=self.dtype)
        self._cache_identity = True

    def _forward(self, X, training):
        if not training or self.rate == 0.0:
            self._cache_identity = True
            return X
        if self._rng is None:
            self._rng = np.random.default_rng(self.random_state)
        n = X.shape[0]
        size = X.size
        mask = self._ws_mask[:size]
        self._rng.random(out=mask, dtype=self.dtype)
        Y = X if self.inplace else self._ws_out[:size].reshape(X.shape)
        _dropout.dropout_forward(X.reshape(-1), mask, self.rate, mask, Y.reshape(-1),
                                 n_threads())
        self._cache_identity = False
        self._cache_n = n
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        if self._cache_identity:
            return dY
        if dY.shape[0] != self._cache_n:
            raise ValueError(f"Dropout.backward: dY has {dY.shape[0]} samples, the last forward "
                             f"had {self._cache_n}")
        flat = dY.reshape(-1)
        _dropout.dropout_backward(flat, self._ws_mask[:flat.size], flat, n_threads())
        return dY

    def get_config(self):
        return {"rate": self.rate, "random_state": self.random_state}

    def state_dict(self):
        """{'generator': the mask generator's PCG64 state, its 128-bit words as decimal strings
        (None before the network initialised it)}."""
        if self._rng is None:
            return {"generator": None}
        st = self._rng.bit_generator.state
        return {"generator": {"bit_generator": st["bit_generator"],
                              "state": str(int(st["state"]["state"])),
                              "inc": str(int(st["state"]["inc"])),
                              "has_uint32": int(st["has_uint32"]),
                              "uinteger": int(st["uinteger"])}}

    def load_state_dict(self, state):
        """Restore a ``state_dict()``: every field is checked (ValueError), then the generator's
        state is set, so masks continue exactly where the saved layer stopped."""
        if not isinstance(state, dict) or set(state) != {"generator"}:
            raise ValueError(f"Dropout state must be {{'generator': ...}}, got {state!r}")
        gen = state["generator"]
        if gen is None:
            self._rng = None
            return
        keys = {"bit_generator", "state", "inc", "has_uint32", "uinteger"}
        if not isinstance(gen, dict) or set(gen) != keys or gen["bit_generator"] != "PCG64":
            raise ValueError(f"Dropout generator state must be a PCG64 state with keys "
                             f"{sorted(keys)}, got {gen!r}")
        words = []
        for name in ("state", "inc"):
            text = gen[name]
            if not (isinstance(text, str) and text.isdigit() and 0 < len(text) <= 39):
                raise ValueError(f"Dropout generator {name!r} must be a decimal string, "
                                 f"got {text!r}")
            words.append(int(text))
        value, inc = words
        has_uint32, uinteger = gen["has_uint32"], gen["uinteger"]
        if not (value < 2**128 and inc < 2**128 and inc % 2 == 1):
            raise ValueError("Dropout generator state: 'state' and 'inc' must be below 2**128 "
                             "and 'inc' odd")
        if has_uint32 not in (0, 1) or isinstance(has_uint32, bool) or \
                not isinstance(uinteger, int) or isinstance(uinteger, bool) or \
                not 0 <= uinteger < 2**32:
            raise ValueError("Dropout generator state: 'has_uint32' must be 0 or 1 and "
                             "'uinteger' a 32-bit unsigned int")
        # the generator is shared state (layers/_base.py): set in place when it exists
        if self._rng is None or not isinstance(self._rng.bit_generator, np.random.PCG64):
            self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = {"bit_generator": "PCG64",
                                         "state": {"state": value, "inc": inc},
                                         "has_uint32": int(has_uint32),
                                         "uinteger": int(uinteger)}
