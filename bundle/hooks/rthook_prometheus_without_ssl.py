"""PyInstaller runtime hook: ``prometheus_client`` in a bundle without ``ssl``.

The lean bundle leaves ``ssl`` out (it loads libssl and libcrypto: ~5 MB
RSS), but ``prometheus_client.exposition`` imports it, and
``urllib.request.HTTPSHandler`` (which exists only with ``ssl``), at the
top, for the push gateway's TLS, which we never use.  This hook puts a
finder in front of ``sys.meta_path`` that, the first time anything imports
``prometheus_client`` (only with ``--metrics-listen``), lets inert
placeholders stand in for both during that one import and removes them at
once, so nothing else ever sees them.  prometheus_client's TLS functions
would fail if called; nothing else changes.  Without ``--metrics-listen``
nothing is imported and the finder only ever answers "not mine".

``tests/test_bundle_hooks.py`` runs :func:`import_prometheus_client` in a
Python whose ``ssl`` is made to fail to import.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: importlib.abc alone costs ~18 ms at every start
    import importlib.machinery

_MISSING = object()


def import_prometheus_client() -> types.ModuleType:
    """Import ``prometheus_client``, with placeholders for ``ssl`` and ``HTTPSHandler`` if they are missing."""
    try:
        import ssl  # noqa: F401
    except ImportError:
        pass
    else:
        import prometheus_client

        return prometheus_client

    import urllib.request

    placeholder = types.ModuleType("ssl", "placeholder: this build has no TLS")
    # Module-level code reads ssl.TLSVersion, ssl.PROTOCOL_TLS_SERVER, ...
    # (annotations and defaults): any name gives an inert class.
    placeholder.__getattr__ = lambda name: type(name, (), {})  # type: ignore[method-assign]
    saved_ssl = sys.modules.get("ssl", _MISSING)
    had_https = hasattr(urllib.request, "HTTPSHandler")
    sys.modules["ssl"] = placeholder
    if not had_https:
        setattr(urllib.request, "HTTPSHandler", type("HTTPSHandler", (urllib.request.BaseHandler,), {}))  # noqa: B010
    try:
        import prometheus_client
    finally:
        if saved_ssl is _MISSING:
            sys.modules.pop("ssl", None)
        else:
            sys.modules["ssl"] = saved_ssl  # type: ignore[assignment]
        if not had_https:
            delattr(urllib.request, "HTTPSHandler")
    return prometheus_client


class _Loaded:
    """Hands the import system the module :func:`import_prometheus_client` has loaded."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def load_module(self, fullname: str) -> types.ModuleType:
        """The legacy loader method (the import system uses the two above)."""
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        """Already executed: only give it back its own spec (the import system set ours)."""
        module.__spec__ = self.spec
        if self.spec is not None:
            module.__loader__ = self.spec.loader


class PrometheusFinder:
    """Imports ``prometheus_client`` through :func:`import_prometheus_client`, once.

    A meta path finder and a loader by their methods (the import system asks
    no more), so that nothing of ``importlib`` is imported at start.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "prometheus_client":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        module = import_prometheus_client()
        return importlib.util.spec_from_loader(fullname, _Loaded(module), origin=getattr(module, "__file__", None))


if getattr(sys, "frozen", False):
    sys.meta_path.insert(0, PrometheusFinder())
