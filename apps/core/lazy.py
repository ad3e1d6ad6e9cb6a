"""Modules loaded on first use, for the features most workers never serve.

The worker's memory is bounded (issue 12: 120 MB at a million users), and py_webauthn with its CBOR
and COSE dependencies costs about 5 MB although most requests never touch a passkey. `lazy_import`
is the standard library's recipe (importlib.util.LazyLoader): the module object exists at once, and
its code runs on the first attribute read, in whatever request needs it first.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str, *, requires: tuple[str, ...] = ()) -> ModuleType:
    """The module `name`, executed when first used (at once if it is loaded already). The packages it
    `requires` must be installed now: a broken install fails at start-up, not in some later request.

    Raises:
        ModuleNotFoundError: `name` or one of `requires` is not installed.
    """
    for package in requires:
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"{name} needs {package}, which is not installed", name=package)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
