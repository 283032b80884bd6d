"""The choices every command offers, light to import (no framework): dtypes, devices, precision modes.
parity/precision.py, which imports JAX and torch, re-exports them."""

MODES = ("strict", "defaults")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
