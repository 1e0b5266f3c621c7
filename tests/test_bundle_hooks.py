"""The bundle's runtime hooks (``bundle/hooks/``), run here as plain modules.

They only act in a frozen bundle; what they do is tested directly.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

HOOKS = Path(__file__).resolve().parent.parent / "bundle" / "hooks"


def load(name: str) -> types.ModuleType:
    """A hook file as a module (not frozen: it installs nothing)."""
    spec = importlib.util.spec_from_file_location(f"_hook_{name}", HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NoSslTests(SynchronousTestCase):
    """The lean bundle has no ``ssl`` module; metrics must work there too."""

    def test_import_without_ssl(self) -> None:
        """prometheus_client imports with ``ssl`` (and ``HTTPSHandler``) missing; no placeholder stays behind."""
        import sys
        import urllib.request

        import_prometheus_client = load("rthook_prometheus_without_ssl").import_prometheus_client

        saved = {name: module for name, module in sys.modules.items() if name.startswith("prometheus_client")}
        self.addCleanup(sys.modules.update, saved)
        for name in saved:
            del sys.modules[name]
        saved_ssl = sys.modules.get("ssl")
        if saved_ssl is not None:
            self.addCleanup(sys.modules.__setitem__, "ssl", saved_ssl)
        https = getattr(urllib.request, "HTTPSHandler", None)
        if https is not None:
            # As in a Python without ssl: urllib.request defines no HTTPSHandler.
            del urllib.request.HTTPSHandler
            self.addCleanup(setattr, urllib.request, "HTTPSHandler", https)
        sys.modules["ssl"] = None  # type: ignore[assignment]  # makes "import ssl" raise ImportError
        self.addCleanup(sys.modules.pop, "ssl", None)

        module = import_prometheus_client()

        self.assertIsNone(sys.modules["ssl"], "the placeholder ssl stayed behind")
        self.assertFalse(hasattr(urllib.request, "HTTPSHandler"), "the placeholder HTTPSHandler stayed behind")
        registry = module.CollectorRegistry()
        module.Counter("c", "a counter", registry=registry).inc()
        self.assertIn(b"c_total 1.0", module.generate_latest(registry))

    def test_finder_imports_through_the_placeholders(self) -> None:
        """The finder the hook installs in a bundle: ``import prometheus_client`` works and keeps its own spec."""
        hook = load("rthook_prometheus_without_ssl")
        saved = {name: module for name, module in sys.modules.items() if name.startswith("prometheus_client")}
        self.addCleanup(sys.modules.update, saved)
        for name in saved:
            del sys.modules[name]
        finder = hook.PrometheusFinder()
        sys.meta_path.insert(0, finder)

        def remove() -> None:
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)

        self.addCleanup(remove)
        import prometheus_client

        self.assertNotIn(finder, sys.meta_path, "the finder works once, then steps aside")
        self.assertIsNotNone(prometheus_client.__spec__)
        self.assertEqual(prometheus_client.__spec__.name, "prometheus_client")
        self.assertIsNot(type(prometheus_client.__spec__.loader), hook._Loaded)
        from prometheus_client.parser import text_string_to_metric_families  # submodules still import

        self.assertTrue(callable(text_string_to_metric_families))
