"""The package's layers, as ``docs/design.md`` draws them, checked on every import.

Each module belongs to a layer; a module may import from lower layers and
from its own package, never from a higher layer or from another package of
its own layer.  Imports inside functions count too (they are how the start
is kept lean, not a way around the layers).  A new module must be placed in
:data:`LAYERS` before it can be imported by anyone.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import workshop_backend

PACKAGE = Path(workshop_backend.__file__).resolve().parent

LAYERS: list[tuple[int, str]] = [
    # (layer, module prefix): the first matching prefix wins, so the longest go first.
    (1, "workshop_backend.validation.spec"),
    (1, "workshop_backend.validation.evaluate"),
    (3, "workshop_backend.validation.runner"),
    (3, "workshop_backend.validation.setup"),
    (1, "workshop_backend.validation"),
    (0, "workshop_backend.support"),
    (2, "workshop_backend.workshop"),
    (3, "workshop_backend.state"),
    (3, "workshop_backend.terminal"),
    (3, "workshop_backend.content"),
    (4, "workshop_backend.application"),
    (5, "workshop_backend.http"),
    (6, "workshop_backend"),
]
"""0 support, 1 the rule language, 2 the domain, 3 state/terminal/validation runner/content,
4 the application, 5 HTTP, 6 the daemon (main, tap, config, services, logs, metrics)."""


def placed(module: str) -> tuple[int, str]:
    """(layer, its sub-package: what counts as "its own") of a module of ours."""
    for layer, prefix in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer, ".".join(module.split(".")[:2])
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    ours = {name for name in found if name.startswith("workshop_backend")}
    # "from workshop_backend.http import views" names a module; "...api import Api" a class: keep modules.
    return {name for name in ours if _is_module(name)}


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


class LayerTests(SynchronousTestCase):
    """HTTP -> application -> state/terminal/validation/content -> workshop -> support, nothing back."""

    def test_every_module_is_placed(self) -> None:
        """Every module of the package has a layer."""
        for path in PACKAGE.rglob("*.py"):
            placed(module_name(path))

    def test_imports_go_down(self) -> None:
        """No module imports a higher layer, or another package of its own layer."""
        wrong = []
        for path in sorted(PACKAGE.rglob("*.py")):
            name = module_name(path)
            layer, own = placed(name)
            for target in sorted(imports(path)):
                target_layer, target_own = placed(target)
                if target_layer > layer or (target_layer == layer and target_own != own and layer != 6):
                    wrong.append(f"{name} (layer {layer}) imports {target} (layer {target_layer})")
        self.assertEqual(wrong, [])

    def test_checker_sees_imports(self) -> None:
        """The check is not vacuous: it finds the runtime's imports, function-level ones too."""
        runtime = imports(PACKAGE / "application" / "runtime.py")
        self.assertIn("workshop_backend.state.store", runtime)
        texts = imports(PACKAGE / "content" / "texts.py")
        self.assertIn("workshop_backend.content.render", texts)


class DesignMapTests(SynchronousTestCase):
    """``docs/design.md`` maps every module of the package (a new one gets its row)."""

    def test_every_module_has_a_row(self) -> None:
        """Each module's path (relative to the package) appears in the design's table."""
        design = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text(encoding="utf-8")
        missing = [
            path.relative_to(PACKAGE).as_posix()
            for path in sorted(PACKAGE.rglob("*.py"))
            if path.name != "__init__.py" and f"`{path.relative_to(PACKAGE).as_posix()}`" not in design
        ]
        self.assertEqual(missing, [])
