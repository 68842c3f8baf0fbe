"""Sample trainer package: run with ``python -m trainer.task --job-dir DIR``."""

__version__ = "0.1.0"
