"""Load SciPy's ``cython_blas`` without the rest of ``scipy.linalg``.

The first Numba kernel a process calls (compiled or loaded from the cache)
makes Numba import ``scipy.linalg.cython_blas``, the BLAS its ``np.dot``
calls, and Python imports a module's parent package first: all of
``scipy.linalg``, which through SciPy's array-API layer also imports
``numpy.f2py``, ``numpy.testing`` and ``numpy.ma``. Measured here: 0.22-0.25 s
of a fresh process's first fit, where ``cython_blas`` alone (one extension
module) loads in 3 ms. So :func:`preload`, run when ``fastnn.kernels`` is
imported, loads just that module from its file, under its full name, as the
import system would (found later in ``sys.modules``, it is the one Numba,
SciPy and everyone else get).

A normal import would also have set the attribute ``scipy.linalg.cython_blas``;
here ``scipy.linalg`` does not exist yet. A one-shot finder sets it when
``scipy.linalg`` is imported later (scikit-learn does), so that package ends up
exactly as it would have been. Anything unexpected (``scipy.linalg`` already
imported, no such file) leaves the import to Python as usual.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

NAME = "scipy.linalg.cython_blas"
PARENT = "scipy.linalg"


def preload():
    """Load ``scipy.linalg.cython_blas`` alone if nothing has imported it or
    ``scipy.linalg`` yet; do nothing on any error (the normal import follows)."""
    if NAME in sys.modules or PARENT in sys.modules:
        return
    try:
        import scipy
        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        finder = importlib.machinery.FileFinder(
            folder, (importlib.machinery.ExtensionFileLoader,
                     importlib.machinery.EXTENSION_SUFFIXES))
        spec = finder.find_spec(NAME)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(NAME, None)
            raise
    except Exception:
        return
    parent = sys.modules.get(PARENT)
    if parent is None:
        sys.meta_path.insert(0, _LinkWhenParentImported())
    elif not hasattr(parent, "cython_blas"):      # the module imported its package after all
        parent.cython_blas = module


class _LinkWhenParentImported(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``scipy.linalg`` it returns the spec the
    other finders give, with a loader that sets ``scipy.linalg.cython_blas``
    once the package has run, and then takes this finder off ``sys.meta_path``
    (a mere ``find_spec`` that never imports leaves it in place)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != PARENT:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _SetChildAfter(spec.loader, self)
                return spec
        return None


class _SetChildAfter(importlib.abc.Loader):
    """The package's own loader, plus the child attribute after it ran."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):          # get_code, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        child = sys.modules.get(NAME)
        if child is not None and not hasattr(module, "cython_blas"):
            module.cython_blas = child
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
