"""One trainer adapter per contender, all with the same interface:

    c = Contender(threads)      # threads: 1 or 2 (fastnn also None: its default policy)
    c.setup(workload)           # model, data, compilation and one warm-up epoch: untimed
    c.run_epoch()               # the timed part: one training epoch (or, for an
                                # inference workload, predict_proba over the rows)
    c.evaluate()                # (loss, accuracy) on the held-out rows, scored by
                                # workloads.score identically for every contender

Every contender starts from the workload's initial weights, so their losses and
accuracies after the same number of epochs should agree within noise.

Thread settings: fastnn through ``fastnn.set_num_threads``; the NumPy ones
(``fastnn.reference``, scikit-learn, the GEMM floor) through threadpoolctl's
BLAS limit; PyTorch through ``torch.set_num_threads``; JAX (whose CPU thread
pool cannot be resized) through the CPU affinity of every thread of the process,
as ``taskset`` would. Each setting is applied around the timed call and undone
after it.
"""

import contextlib
import importlib.util
import os
import time
import warnings

import numpy as np


def _missing(module, hint):
    """A skip reason when ``module`` cannot be imported, else None."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({hint})"
    return None


# ------------------------------------------------------------------ threads

class _Blas:
    """threadpoolctl's BLAS limit with one controller (building one costs
    about 0.4 ms, so it is made once, after the contenders' libraries load)."""
    controller = None

    @classmethod
    def refresh(cls):
        from threadpoolctl import ThreadpoolController
        cls.controller = ThreadpoolController()

    @classmethod
    def limit(cls, threads):
        if cls.controller is None:
            cls.refresh()
        return cls.controller.limit(limits=threads, user_api="blas")


@contextlib.contextmanager
def cpu_affinity(n_cores):
    """Pin every thread of this process to the first ``n_cores`` allowed CPUs
    for the duration of the block, then restore each thread's mask (threads
    started inside the block get the process's mask)."""
    allowed = os.sched_getaffinity(0)
    if n_cores >= len(allowed):
        yield
        return
    target = set(sorted(allowed)[:n_cores])
    saved = {}
    for tid in _thread_ids():
        try:
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, target)
        except OSError:          # the thread ended meanwhile
            pass
    try:
        yield
    finally:
        for tid in _thread_ids():
            try:
                os.sched_setaffinity(tid, saved.get(tid, allowed))
            except OSError:
                pass


def _thread_ids():
    return [int(t) for t in os.listdir("/proc/self/task")]


# ------------------------------------------------------------------- base

class Contender:
    """Base adapter: subclasses fill ``name``, ``threads_options``, ``_build``,
    ``_epoch``, ``_predict`` and (optionally) ``_threads``."""
    name = "?"
    threads_options = (1, 2)
    compiles = False         # True: the warm-up epoch includes compilation

    def __init__(self, threads=1):
        self.threads = threads
        self.workload = None

    @classmethod
    def unavailable(cls):
        """None when the contender can run here, else the reason it cannot."""
        return None

    def setup(self, workload):
        self.workload = workload
        self.data = workload.load()
        self._build(workload)
        _Blas.refresh()
        start = time.perf_counter()
        self.run_epoch()                 # warm-up: compilation, caches, allocations
        self.warmup_s = time.perf_counter() - start
        return self

    def run_epoch(self):
        with self._threads():
            if self.workload.inference:
                return self._predict(self.data.X)
            return self._epoch()

    def evaluate(self):
        with self._threads():
            out = self._predict(self.data.X_test)
        from .workloads import score
        return score(self.workload, out, self.data.y_test)

    @property
    def label(self):
        t = "default" if self.threads is None else f"{self.threads}t"
        return f"{self.name}[{t}]"

    # subclasses
    def _threads(self):
        return _Blas.limit(self.threads)

    def _build(self, workload):
        raise NotImplementedError

    def _epoch(self):
        raise NotImplementedError

    def _predict(self, X):
        """Class probabilities (n, k) / P(class 1) (n,) or values (n,)."""
        raise NotImplementedError


def _trained_weights(workload):
    """Weights for an inference workload: fastnn trained one epoch on the
    training rows from the initial weights (the same for every contender)."""
    key = (workload.name, workload.smoke)
    if key not in _TRAINED:
        from dataclasses import replace
        trained = FastNN(None).setup(replace(workload, inference=False))   # one epoch
        _TRAINED[key] = [(layer.W.copy(), layer.b.copy()) for layer in trained.model.layers]
    return _TRAINED[key]


_TRAINED = {}


def _start_weights(workload):
    return _trained_weights(workload) if workload.inference else workload.initial_weights()


# ----------------------------------------------------------------- fastnn

class FastNN(Contender):
    """fastnn.Sequential, one ``fit(epochs=1)`` per epoch (input checks included)."""
    name = "fastnn"
    threads_options = (None, 1, 2)
    compiles = True

    def _threads(self):
        import fastnn

        @contextlib.contextmanager
        def cap():
            before = fastnn.get_num_threads()
            fastnn.set_num_threads(self.threads)
            try:
                yield
            finally:
                fastnn.set_num_threads(before)
        return cap()

    def _build(self, wl):
        import fastnn as fnn
        layers = [fnn.Dense(u, activation=wl.activation) for u in wl.hidden]
        layers.append(fnn.Dense(wl.widths[-1], activation=wl.output_activation))
        self.model = fnn.Sequential(layers, input_dim=wl.widths[0], dtype="float32", seed=0)
        opt = fnn.SGD(lr=wl.lr) if wl.optimizer == "sgd" else fnn.Adam(lr=wl.lr)
        self.model.compile(loss=wl.loss, optimizer=opt)
        for layer, (W, b) in zip(self.model.layers, _start_weights(wl)):
            layer.W[...] = W
            layer.b[...] = b
        if wl.inference:     # records the label values without training
            self.model.fit(self.data.X, self.data.y, epochs=0)

    def _epoch(self):
        self.model.fit(self.data.X, self.data.y, batch_size=self.workload.batch_size,
                       epochs=1, shuffle=True)

    def _predict(self, X):
        if self.workload.task == "regression":
            return self.model.predict(X)
        return self.model.predict_proba(X)


# -------------------------------------------------------------- reference

class Reference(Contender):
    """fastnn.reference.Model.fit: the plain NumPy trainer, one epoch per call."""
    name = "reference"

    def _build(self, wl):
        from fastnn import reference as ref
        weights = _start_weights(wl)
        layers = [ref.Dense(W.copy(), b.copy(), activation=wl.activation)
                  for W, b in weights[:-1]]
        W, b = weights[-1]
        layers.append(ref.Dense(W.copy(), b.copy(), activation="identity"))
        self.model = ref.Model(layers, wl.loss)
        self.optimizer = (ref.SGD(lr=wl.lr) if wl.optimizer == "sgd"
                          else ref.Adam(lr=wl.lr))
        y = self.data.y
        if wl.task == "multiclass":
            T = np.zeros((len(y), wl.widths[-1]), np.float32)
            T[np.arange(len(y)), y] = 1
        else:
            T = y.astype(np.float32).reshape(-1, 1)
        self.T = T
        self.epochs = 0

    def _epoch(self):
        self.model.fit(self.data.X, self.T, self.optimizer, self.workload.batch_size,
                       epochs=1, shuffle=True, seed=self.epochs)
        self.epochs += 1

    def _predict(self, X):
        from fastnn import reference as ref
        Z = self.model.forward(X)
        if self.workload.task == "multiclass":
            return ref.softmax(Z)
        if self.workload.task == "binary":
            return ref.sigmoid(Z)[:, 0]
        return Z[:, 0]


# ------------------------------------------------------------ scikit-learn

class SKLearn(Contender):
    """MLPClassifier/MLPRegressor with the closest settings: alpha=0, the same
    batch size and learning rate, plain SGD (momentum 0) or Adam, shuffling,
    no early stopping; one ``partial_fit`` per epoch (``fit`` with
    ``warm_start`` would restart Adam's moments every epoch)."""
    name = "sklearn"

    def _build(self, wl):
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        kwargs = dict(hidden_layer_sizes=wl.hidden, activation=wl.activation,
                      solver=wl.optimizer, alpha=0.0, batch_size=wl.batch_size,
                      learning_rate_init=wl.lr, max_iter=1, shuffle=True, random_state=0,
                      tol=0.0, n_iter_no_change=10**9, momentum=0.0,
                      nesterovs_momentum=False)
        est = (MLPRegressor if wl.task == "regression" else MLPClassifier)(**kwargs)
        X, y = self.data.X, self.data.y
        extra = {} if wl.task == "regression" else {"classes": np.unique(y)}
        with _no_convergence_warnings():
            est.partial_fit(X[:wl.batch_size], y[:wl.batch_size], **extra)   # fitted attributes
        weights = _start_weights(wl)
        est.coefs_ = [W.copy() for W, _ in weights]
        est.intercepts_ = [b.copy() for _, b in weights]
        del est._optimizer                              # a fresh optimizer from step 0
        est.t_ = 0
        self.est = est

    def _epoch(self):
        with _no_convergence_warnings():
            self.est.partial_fit(self.data.X, self.data.y)

    def _predict(self, X):
        if self.workload.task == "regression":
            return self.est.predict(X)
        p = self.est.predict_proba(X)
        return p[:, 1] if self.workload.task == "binary" else p


@contextlib.contextmanager
def _no_convergence_warnings():
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# ----------------------------------------------------------------- PyTorch

class Torch(Contender):
    """PyTorch eager: torch.nn.Sequential + torch.optim, a Python loop over
    shuffled minibatches (the usual training loop, without a DataLoader)."""
    name = "torch"

    @classmethod
    def unavailable(cls):
        return _missing("torch", "pip install torch==2.13.0 for the CPU build")

    def _threads(self):
        import torch

        @contextlib.contextmanager
        def cap():
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                torch.set_num_threads(before)
        return cap()

    def _build(self, wl):
        import torch
        act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[wl.activation]
        mods = []
        for W, b in _start_weights(wl):
            lin = torch.nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            mods += [lin, act()]
        self.net = torch.nn.Sequential(*mods[:-1])
        params = self.net.parameters()
        self.opt = (torch.optim.SGD(params, lr=wl.lr) if wl.optimizer == "sgd"
                    else torch.optim.Adam(params, lr=wl.lr))
        self.X = torch.from_numpy(self.data.X)
        y = self.data.y
        if wl.task == "multiclass":
            self.Y = torch.from_numpy(y.astype(np.int64))
            self.loss_fn = torch.nn.CrossEntropyLoss()
        else:
            self.Y = torch.from_numpy(y.astype(np.float32).reshape(-1, 1))
            self.loss_fn = (torch.nn.BCEWithLogitsLoss() if wl.task == "binary"
                            else torch.nn.MSELoss())
        self.gen = torch.Generator().manual_seed(0)

    def _epoch(self):
        import torch
        n, bs = self.X.shape[0], self.workload.batch_size
        order = torch.randperm(n, generator=self.gen)
        net, opt, loss_fn = self.net, self.opt, self.loss_fn
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(self.X[idx]), self.Y[idx])
            loss.backward()
            opt.step()

    def _predict(self, X):
        import torch
        with torch.no_grad():
            Z = self.net(torch.from_numpy(np.ascontiguousarray(X)))
            if self.workload.task == "multiclass":
                return torch.softmax(Z, dim=1).numpy()
            if self.workload.task == "binary":
                return torch.sigmoid(Z)[:, 0].numpy()
            return Z[:, 0].numpy()


# --------------------------------------------------------------------- JAX

class Jax(Contender):
    """JAX: the whole epoch (shuffle, every minibatch's forward, backward and
    update) is one ``jax.jit`` function looping with ``lax.scan``; the last,
    smaller batch (if any) is a second step inside the same function."""
    name = "jax"
    compiles = True

    @classmethod
    def unavailable(cls):
        return _missing("jax", "pip install jax jaxlib")

    def _threads(self):
        return cpu_affinity(self.threads)

    def _build(self, wl):
        import jax
        import jax.numpy as jnp
        from jax import lax

        act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[wl.activation]
        task = wl.task

        def forward(params, X):
            for W, b in params[:-1]:
                X = act(X @ W + b)
            W, b = params[-1]
            return X @ W + b

        def loss_fn(params, X, y):
            Z = forward(params, X)
            if task == "multiclass":
                logp = jax.nn.log_softmax(Z)
                return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            if task == "binary":
                z = Z[:, 0]
                return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
            return jnp.mean((Z[:, 0] - y) ** 2)

        lr, sgd = wl.lr, wl.optimizer == "sgd"
        b1, b2, eps = 0.9, 0.999, 1e-8

        def update(params, state, g):
            if sgd:
                return jax.tree.map(lambda p, d: p - lr * d, params, g), state
            m, v, t = state
            t = t + 1
            m = jax.tree.map(lambda a, d: b1 * a + (1 - b1) * d, m, g)
            v = jax.tree.map(lambda a, d: b2 * a + (1 - b2) * d * d, v, g)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            params = jax.tree.map(
                lambda p, a, s: p - lr * (a / c1) / (jnp.sqrt(s / c2) + eps), params, m, v)
            return params, (m, v, t)

        grad = jax.value_and_grad(loss_fn)
        n, bs = wl.n_train, wl.batch_size
        n_full, rest = divmod(n, bs)

        def step(carry, idx, X, y):
            params, state = carry
            loss, g = grad(params, X[idx], y[idx])
            params, state = update(params, state, g)
            return (params, state), loss

        def epoch(params, state, key, X, y):
            order = jax.random.permutation(key, n)
            carry = (params, state)
            if n_full:
                carry, _ = lax.scan(lambda c, i: step(c, i, X, y), carry,
                                    order[:n_full * bs].reshape(n_full, bs))
            if rest:
                carry, _ = step(carry, order[n_full * bs:], X, y)
            return carry

        def predict(params, X):
            Z = forward(params, X)
            if task == "multiclass":
                return jax.nn.softmax(Z, axis=1)
            return jax.nn.sigmoid(Z[:, 0]) if task == "binary" else Z[:, 0]

        self._epoch_fn = jax.jit(epoch, donate_argnums=(0, 1))
        self._predict_fn = jax.jit(predict)
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in _start_weights(wl)]
        zeros = jax.tree.map(jnp.zeros_like, self.params)
        self.state = (zeros, jax.tree.map(jnp.zeros_like, self.params), jnp.float32(0))
        self.X = jnp.asarray(self.data.X)
        y = self.data.y
        self.y = jnp.asarray(y.astype(np.int32) if task == "multiclass"
                             else y.astype(np.float32))
        self.key = jax.random.key(0)

    def _epoch(self):
        import jax
        self.key, sub = jax.random.split(self.key)
        self.params, self.state = self._epoch_fn(self.params, self.state, sub, self.X, self.y)
        jax.block_until_ready(self.params)

    def _predict(self, X):
        return np.asarray(self._predict_fn(self.params, X))


# ------------------------------------------------------ GEMM floor and peak

class GemmFloor(Contender):
    """Not a trainer: the epoch's matrix products alone (forward, dW of every
    layer, dX of all but the first) on contiguous batches through NumPy's BLAS
    into preallocated outputs -- the time no trainer of this network can beat."""
    name = "gemm-floor"

    def _build(self, wl):
        bs = wl.batch_size
        rng = np.random.default_rng(0)
        self.Ws = [W for W, _ in wl.initial_weights()]
        w = wl.widths
        self.A = [np.ascontiguousarray(self.data.X[:bs])] + [
            rng.random((bs, k), dtype=np.float32) for k in w[1:]]
        self.D = [rng.random((bs, k), dtype=np.float32) for k in w[1:]]
        self.dW = [np.empty_like(W) for W in self.Ws]
        self.dX = [np.empty((bs, k), np.float32) for k in w[:-1]]
        self.Z = [np.empty((bs, k), np.float32) for k in w[1:]]

    def _epoch(self):
        X, bs = self.data.X, self.workload.batch_size
        n_full = X.shape[0] // bs
        Ws, A, D, dW, dX, Z = self.Ws, self.A, self.D, self.dW, self.dX, self.Z
        L = len(Ws)
        for i in range(n_full):
            A[0] = X[i * bs:(i + 1) * bs]
            for l in range(L):
                np.matmul(A[l], Ws[l], out=Z[l])
            for l in reversed(range(L)):
                np.matmul(A[l].T, D[l], out=dW[l])
                if l:
                    np.matmul(D[l], Ws[l].T, out=dX[l])

    def evaluate(self):
        return float("nan"), float("nan")


def sgemm_gflops(threads, n=2048, repeats=3):
    """Best float32 GFLOP/s of an n x n x n np.matmul over ``repeats`` calls."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    best = float("inf")
    with _Blas.limit(threads):
        np.matmul(a, b, out=c)
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


CONTENDERS = {c.name: c for c in (FastNN, Reference, SKLearn, Torch, Jax)}


def entries(names=None):
    """[(contender class, threads)] for every contender and thread setting."""
    names = list(CONTENDERS) if names is None else names
    return [(CONTENDERS[n], t) for n in names for t in CONTENDERS[n].threads_options]
