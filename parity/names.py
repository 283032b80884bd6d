"""The choices every command offers, light to import (no framework): dtypes, devices, precision modes.
parity/precision.py, which imports JAX and torch, re-exports them.

`DTYPES` are the floating dtypes that training, `parity compare` and the tolerance table know;
`CONCEPT_DTYPES` every dtype a concept may declare (`parity check --dtype`)."""

MODES = ("strict", "defaults")
FLOATS = ("float32", "float64")
DTYPES = FLOATS
HALVES = ("float16", "bfloat16")
COMPLEX = ("complex64", "complex128")
INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "bool")
CONCEPT_DTYPES = (*FLOATS, *HALVES, *COMPLEX, *INTEGERS)
DEVICES = ("cpu", "cuda")
