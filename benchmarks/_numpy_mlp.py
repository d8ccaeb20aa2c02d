"""A plain NumPy MLP: the reference baseline of benchmarks/bench_mlp.py.

Written the way a careful NumPy user would: one flat parameter buffer and one flat gradient
buffer (weights and biases are views), every intermediate preallocated for the batch size and
written with ``out=``, the shuffled batch gathered with ``np.take(..., out=)``, scalars kept in
the working dtype, no input gradient for the first layer, and Adam as ~10 whole-buffer NumPy
calls per step (scikit-learn's formulas).  ReLU hidden layers; the output is softmax +
cross-entropy for K >= 2 classes, or one logistic unit + binary cross-entropy for 2 classes
(as scikit-learn and nnc do).

Usage::

    mlp = NumpyMLP(n_features, (64, 64), n_classes, dtype=np.float32, batch_size=32)
    mlp.fit_epochs(X, y, epochs=3, lr=1e-3, rng=np.random.RandomState(0))
    labels = mlp.predict(X)
"""
import numpy as np


class NumpyMLP:
    def __init__(self, n_features, hidden, n_classes, dtype=np.float32, batch_size=32,
                 random_state=0):
        self.dtype = np.dtype(dtype)
        self.n_classes = int(n_classes)
        self.K = 1 if n_classes == 2 else int(n_classes)
        sizes = [int(n_features)] + [int(h) for h in hidden] + [self.K]
        self.sizes = sizes
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        n_b = sum(sizes[1:])
        self.params = np.empty(n_w + n_b, dtype=self.dtype)
        self.grads = np.empty_like(self.params)
        self.W, self.b, self.dW, self.db = [], [], [], []
        off = 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.W.append(self.params[off:off + a * b].reshape(a, b))
            self.dW.append(self.grads[off:off + a * b].reshape(a, b))
            off += a * b
        for b in sizes[1:]:
            self.b.append(self.params[off:off + b])
            self.db.append(self.grads[off:off + b])
            off += b
        rng = np.random.RandomState(random_state)
        for W, b, (fan_in, fan_out) in zip(self.W, self.b, zip(sizes[:-1], sizes[1:])):
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)
        self.tmp = np.empty_like(self.params)
        self.t = 0
        self._alloc(batch_size)

    def _alloc(self, B):
        dt = self.dtype
        self.B = B
        self.Xb = np.empty((B, self.sizes[0]), dt)
        self.yb = np.empty(B, np.intp)
        self.acts = [np.empty((B, s), dt) for s in self.sizes[1:]]
        self.deltas = [np.empty((B, s), dt) for s in self.sizes[1:]]
        self.mask = [np.empty((B, s), bool) for s in self.sizes[1:-1]]
        self.rowmax = np.empty((B, 1), dt)
        self.rowsum = np.empty((B, 1), dt)
        self.ar = np.arange(B)

    # ------------------------------------------------------------------ one batch
    def _forward(self, X, m):
        a = X
        last = len(self.W) - 1
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = self.acts[i][:m]
            np.matmul(a, W, out=z)
            z += b
            if i < last:
                np.maximum(z, 0, out=z)
            a = z
        return a

    def _loss_grad(self, Z, y, m):
        """Mean loss; writes d(loss)/dZ (divided by m) into deltas[-1]."""
        d = self.deltas[-1][:m]
        if self.K == 1:
            # sigmoid + binary cross-entropy: loss = softplus(z) - y z, grad = sigmoid(z) - y
            z = Z[:, 0]
            yf = y.astype(self.dtype)
            loss = float(np.mean(np.logaddexp(0, z) - yf * z))
            np.negative(z, out=d[:, 0])
            np.exp(d[:, 0], out=d[:, 0])
            d[:, 0] += 1
            np.reciprocal(d[:, 0], out=d[:, 0])
            d[:, 0] -= yf
        else:
            mx = self.rowmax[:m]
            s = self.rowsum[:m]
            np.max(Z, axis=1, keepdims=True, out=mx)
            np.subtract(Z, mx, out=d)
            np.exp(d, out=d)
            np.sum(d, axis=1, keepdims=True, out=s)
            d /= s
            ar = self.ar[:m]
            loss = float(-np.mean(np.log(d[ar, y])))
            d[ar, y] -= 1
        d *= self.dtype.type(1.0 / m)
        return loss

    def _backward(self, X, m):
        d = self.deltas[-1][:m]
        for i in range(len(self.W) - 1, -1, -1):
            a_prev = X if i == 0 else self.acts[i - 1][:m]
            np.matmul(a_prev.T, d, out=self.dW[i])
            np.sum(d, axis=0, out=self.db[i])
            if i > 0:
                d_prev = self.deltas[i - 1][:m]
                np.matmul(d, self.W[i].T, out=d_prev)
                mask = self.mask[i - 1][:m]
                np.greater(a_prev, 0, out=mask)
                d_prev *= mask
                d = d_prev

    def _adam(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        t = self.t = self.t + 1
        ty = self.dtype.type
        lr_t = ty(lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t))
        g, m, v, tmp = self.grads, self.m, self.v, self.tmp
        m *= ty(beta1)
        np.multiply(g, ty(1 - beta1), out=tmp)
        m += tmp
        v *= ty(beta2)
        np.multiply(g, g, out=tmp)
        tmp *= ty(1 - beta2)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += ty(eps)
        np.divide(m, tmp, out=tmp)
        tmp *= lr_t
        self.params -= tmp

    # ------------------------------------------------------------------ API
    def fit_epochs(self, X, y, epochs=1, lr=1e-3, rng=None, shuffle=True):
        """Mini-batch Adam; returns the last epoch's mean loss."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        y = np.asarray(y, dtype=np.intp)
        n = X.shape[0]
        rng = np.random.RandomState(0) if rng is None else rng
        B = self.B
        loss = 0.0
        for _ in range(epochs):
            idx = rng.permutation(n) if shuffle else None
            total = 0.0
            for start in range(0, n, B):
                stop = min(n, start + B)
                m = stop - start
                if idx is None:
                    Xb, yb = X[start:stop], y[start:stop]
                else:
                    Xb, yb = self.Xb[:m], self.yb[:m]
                    np.take(X, idx[start:stop], axis=0, out=Xb)
                    np.take(y, idx[start:stop], out=yb)
                Z = self._forward(Xb, m)
                total += self._loss_grad(Z, yb, m) * m
                self._backward(Xb, m)
                self._adam(lr)
            loss = total / n
        return loss

    def decision(self, X):
        X = np.ascontiguousarray(X, dtype=self.dtype)
        a = X
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            a = a @ W
            a += b
            if i < len(self.W) - 1:
                np.maximum(a, 0, out=a)
        return a

    def predict(self, X):
        Z = self.decision(X)
        if self.K == 1:
            return (Z[:, 0] > 0).astype(np.intp)
        return Z.argmax(axis=1)
