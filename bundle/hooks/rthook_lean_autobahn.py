"""PyInstaller runtime hook: import ``autobahn.twisted`` submodules without the WAMP layer.

``autobahn/twisted/__init__.py`` re-exports ``ApplicationSession`` and so
imports the whole WAMP stack (and ``cryptography``) although the backend
only uses ``autobahn.twisted.websocket`` and ``autobahn.twisted.resource``.
This hook registers the package module *without running its __init__*, so
its submodules import as usual.  Anything that asks the package itself for
an attribute (``autobahn.twisted.ApplicationSession``) triggers the real
``__init__`` then, so nothing breaks: it only gets slower and bigger.
"""


def _install() -> None:
    import importlib.util
    import sys

    if "autobahn.twisted" in sys.modules:
        return
    spec = importlib.util.find_spec("autobahn.twisted")
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    state = {"loaded": False}

    def __getattr__(name: str) -> object:
        if not state["loaded"] and not name.startswith("__"):
            state["loaded"] = True
            spec.loader.exec_module(package)  # type: ignore[union-attr]
            return getattr(package, name)
        raise AttributeError(f"module 'autobahn.twisted' has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["autobahn.twisted"] = package
    import autobahn

    autobahn.twisted = package  # type: ignore[attr-defined]


_install()
del _install
