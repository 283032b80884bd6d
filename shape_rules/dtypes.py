"""Which dtypes each op accepts and what dtype it returns, with torch's (2.13, CPU) behaviour as the rule.

Pure Python on dtype *names* ("float16", "int64", ...; torch's "torch.float16" is accepted too), so both
twins raise the same message for the same refusal and compute the same result dtype. What torch computes
the JAX twin computes in the same dtype; what torch refuses (often with a raw RuntimeError or
NotImplementedError from deep inside a kernel) both twins refuse up front with a `DtypeError`.
The rules are checked on static metadata only: no host sync, and inside `jax.jit` once per trace.
"""
from __future__ import annotations


class DtypeError(TypeError, ValueError):
    """An input or argument of an unsupported dtype.

    A TypeError (the wrong kind of input) and a ValueError (as every other argument check of the
    twins), so code catching either sees it.
    """


BOOL = ("bool",)
INTEGER = ("uint8", "int8", "int16", "int32", "int64")  # torch's uint16/32/64 have almost no kernels
HALF = ("float16", "bfloat16")
FLOATING = HALF + ("float32", "float64")
COMPLEX = ("complex64", "complex128")

# The accepted kinds: name -> (dtype names, how an error message says it).
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "floating": (FLOATING, "a floating dtype"),
    "floating or complex": (FLOATING + COMPLEX, "a floating or complex dtype"),
    "floating or integer": (FLOATING + INTEGER, "a floating or integer dtype"),
    "floating or int64": (FLOATING + ("int64",), "a floating dtype or int64"),
    "numeric": (FLOATING + COMPLEX + INTEGER, "a floating, complex or integer dtype"),
    "integer": (INTEGER, "an integer dtype: class indices"),
    # MaxUnpool2d's indices: torch wants int64; int32 too, JAX's integer with x64 off (its MaxPool2d
    # returns int32 indices then), which torch's twin casts to int64
    "indices": (("int32", "int64"), "int64 (or int32): MaxPool2d's flat indices"),
}

# What each op accepts, measured on torch 2.13's CPU kernels (tests/test_twin_dtypes.py keeps the
# matrix). Ops not listed accept every dtype: reshape, flatten_batch, mul, Flatten, zeros/ones/eye,
# and sigmoid/tanh (bool and integer input give float32 there, torch's default dtype).
OPS: dict[str, str] = {
    "matmul": "numeric",  # bool: torch has no bool matmul kernel
    "mm": "numeric",
    "neuron": "numeric",  # x and w, as matmul
    "relu": "floating or integer",  # bool: "Boolean inputs not supported"; complex: no clamp
    "log_sigmoid": "floating",  # as torch.nn.functional.logsigmoid
    "softmax": "floating",  # as torch.softmax
    "log_softmax": "floating",  # as torch.log_softmax
    "gelu": "floating",
    "Linear": "floating or complex",  # the layer's dtype: integer parameters cannot require gradients
    "Conv2d": "floating or complex",
    "Dropout": "floating",  # in training with 0 < p < 1: torch draws its mask only for floating input
    "MaxPool2d": "floating or integer",
    "AvgPool2d": "floating or int64",  # torch has an int64 kernel (truncating division) and no other integer one
    "AdaptiveAvgPool2d": "floating",
    "MaxUnpool2d": "floating",  # the input; torch has no integer kernel ("not implemented for 'Long'")
    "BatchNorm2d": "floating",
    "mse_loss": "floating",  # the promoted dtype of y_hat and y
    "cross_entropy": "floating",  # logits
}

DEFAULT_FLOAT = "float32"  # torch.get_default_dtype(): the result of a float op on bool or integer input


def dtype_name(dtype) -> str:
    """'float16' for a dtype name, a NumPy dtype or a torch dtype (whose str() is 'torch.float16')."""
    name = dtype if isinstance(dtype, str) else str(dtype)
    return name.removeprefix("torch.")


def check_dtype(op: str, param: str, dtype, kind: str | None = None, when: str = "") -> str:
    """The dtype's name when `op` accepts it for `param` (by the OPS table, or `kind`); a DtypeError otherwise.

    The message names the op, the parameter, the dtype and what is expected, e.g. "MaxPool2d: input
    dtype complex64 is not supported (expected a floating or integer dtype)".
    """
    name = dtype_name(dtype)
    names, says = KINDS[kind or OPS[op]]
    if name not in names:
        raise DtypeError(f"{op}: {param} dtype {name} is not supported{when} (expected {says})")
    return name


def check_same_dtype(op: str, param_a: str, dtype_a, param_b: str, dtype_b, hint: str) -> str:
    """The common name when both dtypes are equal (torch's matmul, Linear and Conv2d never mix); a
    DtypeError otherwise."""
    a, b = dtype_name(dtype_a), dtype_name(dtype_b)
    if a != b:
        raise DtypeError(f"{op}: {param_a} dtype {a} differs from {param_b} dtype {b}; {hint}")
    return a


def check_layer_dtype(op: str, dtype) -> str:
    """A layer's constructor dtype (`dtype=`), checked before any parameter is created."""
    name = dtype_name(dtype)
    names, says = KINDS[OPS[op]]
    if name not in names:
        raise DtypeError(f"{op}: dtype={name} is not supported (expected {says})")
    return name


def check_input_matches_layer(op: str, input_dtype, layer_dtype) -> str:
    """The input has the layer's dtype, as torch requires (it would raise a RuntimeError deep in the kernel)."""
    x = dtype_name(input_dtype)
    return check_same_dtype(op, "input", x, "the layer's", layer_dtype,
                            f"cast the input to the layer's dtype or build the layer with dtype={x}")


def check_batchnorm_input(input_dtype, layer_dtype) -> str:
    """BatchNorm2d's input: floating and the layer's dtype, or float16/bfloat16 into a float32 layer.

    torch's CPU and CUDA kernels allow that one mix (half activations, float32 parameters and running
    statistics): the output has the input's dtype and the statistics stay float32.
    """
    x = check_dtype("BatchNorm2d", "input", input_dtype)
    layer = dtype_name(layer_dtype)
    if x in HALF and layer == "float32":
        return x
    return check_input_matches_layer("BatchNorm2d", x, layer)


def check_mse_dtypes(y_hat_dtype, y_dtype) -> str:
    """mse_loss's result dtype: y_hat's and y's dtypes promoted (torch's rule), which must be floating."""
    a, b = dtype_name(y_hat_dtype), dtype_name(y_dtype)
    out = promote_types(a, b)
    if out not in FLOATING:
        raise DtypeError(f"mse_loss: y_hat dtype {a} and y dtype {b} promote to {out}, which is not "
                         f"supported (expected a floating dtype)")
    return out


def check_labels(dtype) -> str:
    """cross_entropy's labels: class indices of any integer dtype (torch's own kernel wants int64 or
    uint8; its twin casts, so int32 labels, JAX's default without x64, work in both)."""
    name = dtype_name(dtype)
    if name not in INTEGER:
        raise DtypeError(f"cross_entropy: labels must be integers (class indices), got labels dtype {name}")
    return name


def float_result(dtype) -> str:
    """The result dtype of a float function (sigmoid, tanh) in torch: bool and integer give float32."""
    name = dtype_name(dtype)
    return DEFAULT_FLOAT if name in BOOL + INTEGER else name


def compute_dtype(dtype) -> str:
    """The dtype to compute in where torch's kernel computes in float32 ("opmath") and rounds once:
    float32 for float16/bfloat16, the dtype itself otherwise."""
    name = dtype_name(dtype)
    return "float32" if name in HALF else name


# ---------------------------------------------------------------- type promotion, torch's rules
def _category(name: str) -> int:
    if name in BOOL:
        return 0
    if name in INTEGER:
        return 1
    if name in FLOATING:
        return 2
    if name in COMPLEX:
        return 3
    raise DtypeError(f"no promotion rule for dtype {name}")


def _bits(name: str) -> int:
    return {"bool": 1, "uint8": 8, "int8": 8, "int16": 16, "int32": 32, "int64": 64, "float16": 16,
            "bfloat16": 16, "float32": 32, "float64": 64, "complex64": 64, "complex128": 128}[name]


def promote_types(a, b) -> str:
    """torch.promote_types for two dtype names (JAX's jnp.promote_types agrees on these, with x64 on)."""
    a, b = dtype_name(a), dtype_name(b)
    if a == b:
        return a
    ca, cb = _category(a), _category(b)
    if ca != cb:
        hi, lo = (a, b) if ca > cb else (b, a)
        if _category(hi) == 3 and lo == "float64":
            return "complex128"
        return hi
    if ca == 1:
        if "uint8" in (a, b):
            other = b if a == "uint8" else a
            return "int16" if other == "int8" else other
        return a if _bits(a) > _bits(b) else b
    if ca == 2 and {a, b} == set(HALF):
        return "float32"
    return a if _bits(a) > _bits(b) else b


def _combine(higher: str | None, lower: str | None) -> str | None:
    """c10's combine_categories: a higher-priority operand's category wins unless a lower one's is higher."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    ch, cl = _category(higher), _category(lower)
    if ch == 3:
        return higher
    if cl == 3:
        if ch == 2:
            return {"float16": "complex32", "float64": "complex128"}.get(higher, "complex64")
        return lower
    if ch == 2:
        return higher
    if ch == 0 or cl == 2:
        return promote_types(higher, lower)
    return higher


def result_type(op: str, *operands: tuple) -> str:
    """torch.result_type of operands given as (dtype name, ndim, is a Python scalar).

    torch ranks operands: tensors with dimensions, then 0-d tensors, then Python scalars; a lower rank
    only counts when its category (bool < integer < floating < complex) is higher. So float16 (3,)
    times a float32 0-d tensor is float16 in torch and float32 in jnp; a Python float is float32
    (torch's default dtype), not float64 as a weakly typed float under JAX's x64.
    """
    ranks: list[str | None] = [None, None, None]  # dimensioned, 0-d, Python scalar
    for name, ndim, scalar in operands:
        name = dtype_name(name)
        if scalar:
            c = _category(name)
            name = {2: DEFAULT_FLOAT, 3: "complex64", 1: "int64"}.get(c, name)
            i = 2
        else:
            i = 0 if ndim > 0 else 1
        ranks[i] = name if ranks[i] is None else promote_types(ranks[i], name)
    out = _combine(ranks[0], _combine(ranks[1], ranks[2]))
    if out == "complex32":
        raise complex32_error(op)
    return out


def complex32_error(op: str) -> DtypeError:
    """The refusal of a float16 × complex result: complex32 in torch, a dtype JAX lacks."""
    return DtypeError(f"{op}: float16 with a complex operand gives complex32 in torch, which JAX "
                      f"lacks; cast the float16 operand to float32 first")
