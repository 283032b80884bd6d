"""Framework-free rules both leaves follow: argument checks and torch's output-size arithmetic.

Pure Python that imports neither framework, so `jax_impl` and `torch_impl` share one copy of each
rule and of its error message (the leaves still never import each other). Each leaf keeps what is
layout-specific, such as checking an NHWC or an NCHW input. The dtype rules (what each op accepts
and returns, by torch's behaviour) live in `shape_rules.dtypes`.
"""
from __future__ import annotations

from shape_rules import dtypes, losses  # noqa: F401  (imported here so the no-framework import check covers them)
from shape_rules.dtypes import DtypeError  # noqa: F401

AXES = ("height", "width")


def pair(layer: str, name: str, v, allow_none: bool = False, broadcast: bool = False) -> tuple:
    """An int or a pair of ints as a pair; a clear TypeError otherwise.

    With `broadcast`, a one-element tuple or list counts as that int for both axes, as torch's
    pooling layers (every size argument) and Conv2d (stride, padding, dilation; not kernel_size,
    whose one-element form torch turns into a 1-D weight that fails in forward) accept it.
    """
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if broadcast and len(vals) == 1:
        vals = vals * 2
    ok = len(vals) == 2 and all((x is None and allow_none) or
                                (isinstance(x, int) and not isinstance(x, bool)) for x in vals)
    if not ok:
        forms = "an int, a one-element tuple or a pair of ints" if broadcast else "an int or a pair of ints"
        raise TypeError(f"{layer}: {name} must be {forms}, got {v!r}")
    return vals


def at_least(layer: str, name: str, vals: tuple, lo: int) -> tuple:
    """`vals` unchanged when every entry is >= lo; a ValueError naming the parameter otherwise."""
    if any(x < lo for x in vals):
        raise ValueError(f"{layer}: {name} must be >= {lo}, got {vals[0] if vals[0] == vals[1] else vals}")
    return vals


def check_fits(layer: str, size: tuple, pads: tuple, kernel: tuple, dilation: tuple) -> None:
    """The (dilated) kernel fits in the padded input, as torch requires."""
    for axis, n, (lo, hi), k, d in zip(AXES, size, pads, kernel, dilation):
        extent = d * (k - 1) + 1
        if extent > n + lo + hi:
            raise ValueError(f"{layer}: kernel_size {k} (dilated extent {extent}) is larger than the "
                             f"padded input {axis} {n + lo + hi} ({n} + padding {lo}+{hi})")


def same_padding(kernel: tuple, dilation: tuple) -> tuple:
    """torch's padding='same': total d·(k−1) per axis, the odd pixel on the right/bottom (trap 6)."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
              padding_mode="zeros") -> tuple:
    """Conv2d's (kernel_size, stride, padding, dilation) as pairs ('same'/'valid' kept), validated."""
    name = "Conv2d"
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{name}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                         f"got {padding_mode!r}")
    at_least(name, "in_channels", (in_channels, in_channels), 1)
    at_least(name, "out_channels", (out_channels, out_channels), 1)
    kernel_size = at_least(name, "kernel_size", pair(name, "kernel_size", kernel_size), 1)
    stride = at_least(name, "stride", pair(name, "stride", stride, broadcast=True), 1)
    dilation = at_least(name, "dilation", pair(name, "dilation", dilation, broadcast=True), 1)
    if not isinstance(groups, int) or groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"{name}: groups must be a positive int dividing in_channels={in_channels} "
                         f"and out_channels={out_channels}, got groups={groups!r}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{name}: padding='same' needs stride=1 (as in torch), got stride={stride}")
    else:
        padding = at_least(name, "padding", pair(name, "padding", padding, broadcast=True), 0)
    return kernel_size, stride, padding, dilation


def check_mode_padding(layer: str, padding_mode: str, size: tuple, pads: tuple) -> None:
    """What torch's reflect and circular padding need of the input: reflect a padding smaller than
    the axis (it mirrors the axis without its edge), circular at most the axis (it wraps once)."""
    for axis, n, pair_ in zip(AXES, size, pads):
        p = max(pair_)
        if padding_mode == "reflect" and p >= n:
            raise ValueError(f"{layer}: padding_mode='reflect' needs padding smaller than the input: padding "
                             f"{p} on input {axis} {n}")
        if padding_mode == "circular" and p > n:
            raise ValueError(f"{layer}: padding_mode='circular' needs padding at most the input's size (it "
                             f"would wrap around more than once): padding {p} on input {axis} {n}")


def conv_pads(padding, kernel: tuple, dilation: tuple) -> tuple:
    """(low, high) padding per spatial axis for a Conv2d padding of a pair, 'same' or 'valid'."""
    if padding == "same":
        return same_padding(kernel, dilation)
    if padding == "valid":
        return ((0, 0), (0, 0))
    return tuple((p, p) for p in padding)


def pool_args(layer, kernel_size, stride, padding, dilation) -> tuple:
    """(kernel, stride, padding, dilation) as pairs, validated; stride defaults to the kernel.

    Each may be an int, a pair or a one-element tuple (broadcast), as torch's pooling layers take.
    """
    kernel = at_least(layer, "kernel_size", pair(layer, "kernel_size", kernel_size, broadcast=True), 1)
    stride = kernel if stride is None else at_least(layer, "stride", pair(layer, "stride", stride, broadcast=True), 1)
    padding = at_least(layer, "padding", pair(layer, "padding", padding, broadcast=True), 0)
    dilation = at_least(layer, "dilation", pair(layer, "dilation", dilation, broadcast=True), 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{layer}: padding must be at most half of kernel_size (as in torch), "
                         f"got padding={padding} for kernel_size={kernel}")
    return kernel, stride, padding, dilation


def pool_out_size(layer, axis, n, k, s, p, d, ceil_mode) -> int:
    """torch's pooling output size; in ceil_mode the last window must start inside input or left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    if out < 1:
        raise ValueError(f"{layer}: kernel_size {k} (dilated extent {d * (k - 1) + 1}) is larger than "
                         f"the padded input {axis} {n + 2 * p} (output size would be {out})")
    for o in range(out):  # only a dilated window can skip over the whole input
        start = o * s - p
        if not any(0 <= start + j * d < n for j in range(k)):
            raise ValueError(f"{layer}: with dilation {d}, the window at output {axis} index {o} reads "
                             f"only padding (input {axis} {n}); torch returns -inf there and its "
                             f"gradient writes out of bounds, so both twins reject it")
    return out


def check_divisor_override(layer: str, divisor_override) -> None:
    """AvgPool2d's divisor_override: None or a non-zero int (torch raises TypeError for a float or a
    bool and "divisor must be not zero" for 0; a negative divisor it accepts, and so do the twins)."""
    if divisor_override is None:
        return
    if not isinstance(divisor_override, int) or isinstance(divisor_override, bool):
        raise TypeError(f"{layer}: divisor_override must be an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{layer}: divisor_override must not be 0")


def check_nonempty(layer: str, shape: tuple, batched: bool) -> None:
    """Only the batch axis may be empty (torch's pooling and convolution kernels refuse an empty
    channel or spatial axis and accept N = 0, returning an empty batch)."""
    rest = tuple(shape[1:] if batched else shape)
    if 0 in rest:
        raise ValueError(f"{layer}: expected non-empty channel and spatial axes (only the batch axis may "
                         f"be 0), got shape {tuple(shape)}")


def unpool_out_size(layer: str, size: tuple, kernel: tuple, stride: tuple, padding: tuple, output_size,
                    hw: tuple[int, int]) -> tuple:
    """MaxUnpool2d's output (H, W): torch's default (H_in − 1)·stride − 2·padding + kernel, or
    `output_size` (2 entries, or a batched input's 4-entry shape whose spatial entries are at `hw`:
    (2, 3) for NCHW, (1, 2) for NHWC), each strictly within one stride of the default."""
    default = tuple((n - 1) * s - 2 * p + k for n, k, s, p in zip(size, kernel, stride, padding))
    if output_size is None:
        out = default
    else:
        if not isinstance(output_size, (tuple, list)) or not all(
                isinstance(o, int) and not isinstance(o, bool) for o in output_size):
            raise TypeError(f"{layer}: output_size must be a sequence of 2 ints (H, W) or a batched "
                            f"input's 4-entry shape, got {output_size!r}")
        if len(output_size) not in (2, 4):
            raise ValueError(f"{layer}: output_size must have 2 entries (H, W) or 4 (a batched input's "
                             f"shape), got {len(output_size)}: {tuple(output_size)}")
        out = tuple(output_size) if len(output_size) == 2 else (output_size[hw[0]], output_size[hw[1]])
        for axis, o, dflt, s in zip(AXES, out, default, stride):
            if not dflt - s < o < dflt + s:
                raise ValueError(f"{layer}: output_size {axis} {o} must lie strictly between {dflt - s} and "
                                 f"{dflt + s} (the default {dflt} ± stride {s}), got output_size {tuple(output_size)}")
    if min(out) < 0:  # as torch; a 0-sized output then only takes an empty batch (no index fits)
        raise ValueError(f"{layer}: the output would be {out[0]}×{out[1]}; sizes must be >= 0")
    return out


def cnn_features(image_size, channels, padding) -> int:
    """SmallCNN's flattened width: each block is a 3×3 conv (stride 1) then a 2×2 max-pool."""
    size = image_size
    for _ in channels:
        size = (size + 2 * padding - 2) // 2
    if size < 1:
        raise ValueError(f"SmallCNN: a {image_size}×{image_size} image shrinks to nothing with "
                         f"padding={padding}; use padding=1 for small images such as 8×8 digits")
    return size * size * channels[-1]


def check_batchnorm_args(num_features, eps, momentum) -> None:
    """BatchNorm2d's constructor arguments, with momentum in torch's meaning (weight of the new batch);
    None is torch's cumulative moving average (weight 1/n for the n-th batch)."""
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"BatchNorm2d: num_features must be an int >= 1, got {num_features!r}")
    if not eps > 0:
        raise ValueError(f"BatchNorm2d: eps must be > 0, got {eps!r}")
    if momentum is not None and (not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0):
        raise ValueError(f"BatchNorm2d: momentum must be in [0, 1] (torch's meaning) or None (cumulative "
                         f"average), got {momentum!r}")


def check_optimizer_args(lr, momentum=0.0, dampening=0.0, nesterov=False, betas=(0.9, 0.999), eps=1e-8,
                         weight_decay=0.0) -> None:
    """SGD/Adam/AdamW hyper-parameters in the ranges torch.optim accepts."""
    if lr < 0 or momentum < 0 or weight_decay < 0 or eps < 0:
        raise ValueError(f"lr, momentum, weight_decay and eps must be >= 0, got lr={lr}, "
                         f"momentum={momentum}, weight_decay={weight_decay}, eps={eps}")
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must lie in [0, 1), got {betas}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov momentum needs momentum > 0 and dampening 0")


def check_like_params(name: str, params: dict, tree: dict) -> None:
    """`tree` (gradients or updates) has exactly the parameters' leaves and shapes, or a ValueError.

    Both are {leaf path: shape}, paths written as indexing (`['w']`, `[0]`, '' for a lone leaf) so
    that each twin flattens its own containers; an optimiser checks before any arithmetic, where a
    missing leaf would drop a parameter and a (1, 3) gradient would broadcast onto a (3,) one.
    """
    missing = sorted(p for p in params if p not in tree)
    unexpected = sorted(p for p in tree if p not in params)
    if missing or unexpected:
        parts = ([f"missing {', '.join(p or 'the root leaf' for p in missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(p or 'the root leaf' for p in unexpected)}"] if unexpected else [])
        raise ValueError(f"{name}: structure differs from params: {'; '.join(parts)}")
    wrong = [f"{name}{p}: shape {tuple(tree[p])} does not match the parameter's {tuple(params[p])}"
             for p in sorted(params) if tuple(tree[p]) != tuple(params[p])]
    if wrong:
        raise ValueError("; ".join(wrong))
