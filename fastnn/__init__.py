"""fastnn: fast multilayer perceptrons on CPUs, trained by Numba kernels.

    import fastnn as fnn
    model = fnn.Sequential([fnn.Dense(64, activation="relu"), fnn.Dense(3)],
                           input_dim=2, seed=0)
    model.compile(loss="softmax_cross_entropy", optimizer=fnn.Adam(lr=1e-3))
    hist = model.fit(X, y, batch_size=32, epochs=20)
"""

from . import callbacks, schedules
from .layers import BatchNorm, Dense, Dropout
from .model import Sequential
from .optimizers import SGD, Adam, AdamW, Momentum, RMSProp
from .threads import get_num_threads, set_num_threads
from .trainer import History

__version__ = "0.1.0"

__all__ = ["Sequential", "Dense", "BatchNorm", "Dropout", "SGD", "Momentum", "RMSProp",
           "Adam", "AdamW", "History", "callbacks", "schedules", "load", "reference",
           "set_num_threads", "get_num_threads", "MLPClassifier", "MLPRegressor", "data"]


def load(path):
    """Load a model saved with ``model.save(path)`` (no pickle; a damaged or
    foreign file raises ValueError)."""
    from .io import load as _load
    return _load(path)


def __getattr__(name):
    # heavy or optional parts load on first use, keeping `import fastnn` light
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import sklearn as _sk
        return getattr(_sk, name)
    if name in ("reference", "sklearn", "data", "io", "demo"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
