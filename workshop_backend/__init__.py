"""workshop-backend: the runtime engine inside every workshop container."""

__version__ = "0.1.0"
