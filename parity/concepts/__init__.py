"""Importing this package registers every concept (one module per group family)."""
from parity.concepts import basics  # noqa: F401
