"""Invalidate Numba's on-disk cache when any kernel source changes.

Numba keys a cached function on its own file's timestamp only. A kernel that
calls kernels in other files (``train_batches`` calls ``loss_grad``...) keeps
their old machine code after those files change, silently. So at import we
hash every kernel source file and, when the hash differs from the one recorded
beside the cache, delete this package's cache files (they are rebuilt on first
use). Costs well under a millisecond; does nothing where the cache directory
is not writable (Numba then caches elsewhere, keyed the same way).
"""

import hashlib
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_CACHE = os.path.join(_HERE, "__pycache__")
_STAMP = os.path.join(_CACHE, "fastnn-kernels.sha256")


def _sources_hash():
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def check():
    """Drop stale cache files if the kernel sources changed since they were built."""
    try:
        digest = _sources_hash()
    except OSError:
        return
    try:
        with open(_STAMP) as f:
            if f.read().strip() == digest:
                return
    except OSError:
        pass
    try:
        os.makedirs(_CACHE, exist_ok=True)
        for name in os.listdir(_CACHE):
            if name.endswith((".nbi", ".nbc")):
                os.remove(os.path.join(_CACHE, name))
        tmp = f"{_STAMP}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(digest)
        os.replace(tmp, _STAMP)
    except OSError:
        pass
