"""Importing this package registers every concept (one module per group family)."""
from parity.concepts import basics  # noqa: F401
from parity.concepts import layers  # noqa: F401
from parity.concepts import optim  # noqa: F401
from parity.concepts import training  # noqa: F401
