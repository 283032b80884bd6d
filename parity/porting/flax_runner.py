"""The Flax model as one compiled function of its state: a pass returning the outputs, every leaf
layer's input and output, the state after the pass and, given cotangents, the gradients."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from parity.porting import trace
from parity.porting.masks import mask_args, mask_store
from parity.porting.model_errors import framework_errors


class FlaxRunner:
    """The Flax model as one pure function of its state, compiled once per comparison: a pass that
    returns, besides the outputs, every leaf layer's input and output (extra outputs of the same
    jitted function; the call order and call sites are noted while tracing), the state after the
    pass, and, given cotangents, the gradient of Σ out·ct wrt the parameters and the floating inputs
    (nnx.grad, so a training-mode pass may update BatchNorm statistics on the way). The arrays are
    whatever was last written into the model."""

    def __init__(self, f, fl: dict, f_np: list, f_kw: dict, train: bool, layout: str, jdev):
        self.f, self.fl, self.f_kw, self.train, self.layout = f, fl, f_kw, train, layout
        self.graphdef = nnx.graphdef(f)
        self.xs = [jax.device_put(a, jdev) for a in f_np]
        self.float_in = [i for i, a in enumerate(f_np) if a.dtype.kind == "f"]
        self.meta: list = []  # the calls of the latest trace (of a failed one, too)
        self._metas: dict = {}  # the calls each trace of `_pass` made, by what the trace depends on
        self.out_shapes: list = []
        self._jit = jax.jit(self._pass, static_argnums=0)
        self.shapes = [tuple(a.shape) for a in f_np]

    @staticmethod
    def _key(pairing, masks, cts) -> tuple:
        """What a trace of `_pass` depends on besides shapes: jit retraces exactly when it changes."""
        return id(pairing), tuple(sorted(masks)), cts is None

    def _pass(self, pairing, params, rest, xs_float, masks, cts):
        self.meta = self._metas[self._key(pairing, masks, cts)] = []
        inject = mask_store(masks, self.layout).flax_inject(pairing, self.train)

        def forward(m, xf):
            arrays, counts = [], {}

            def handler(leaf, module, call, args, kwargs):
                k = counts.get(leaf.name, 0)
                counts[leaf.name] = k + 1
                x = args[0] if args else None
                out = inject(leaf, k, module, x, kwargs)
                if out is None:
                    out = call(*args, **kwargs)
                slots = []
                rx, rout = trace.recorded("flax", leaf, module, x, out, kwargs)  # what the kind compares
                for v in (rx, rout):
                    slots.append(len(arrays) if isinstance(v, jax.Array) else None)
                    if isinstance(v, jax.Array):
                        arrays.append(v)
                self.meta.append(trace.Call(leaf, k, slots[0], slots[1], trace.call_site(),
                                            tuple(rx.shape) if isinstance(rx, jax.Array) else None,
                                            tuple(rout.shape) if isinstance(rout, jax.Array) else None))
                return out
            args = list(self.xs)
            for j, i in enumerate(self.float_in):
                args[i] = xf[j]
            self.meta.clear()  # the calls of this pass only (nnx.grad may trace the function anew)
            with trace.bind(m, self.fl, handler):
                outs = tuple(jax.tree.leaves(m(*args, **self.f_kw)))
            return outs, arrays

        m = nnx.merge(self.graphdef, params, rest)
        if cts is None:
            outs, arrays = forward(m, xs_float)
            grads = None
        else:
            def scalar(m, xf):
                outs, arrays = forward(m, xf)
                return sum((o * c).sum() for o, c in zip(outs, cts) if c is not None), (outs, arrays)
            (gp, gx), (outs, arrays) = nnx.grad(scalar, argnums=(nnx.DiffState(0, nnx.Param), 1),
                                                has_aux=True)(m, xs_float)
            grads = (gp, gx)
        return outs, arrays, nnx.split(m, nnx.Param, ...)[2], grads

    def run(self, pairing=None, masks=None, cts=None, abstract=False):
        """(calls, outputs, the state after the pass, gradients or None); `abstract`: shapes only,
        traced but not compiled."""
        _, params, rest = nnx.split(self.f, nnx.Param, ...)
        xs_float = [self.xs[i] for i in self.float_in]
        cts = None if cts is None else [None if c is None else jnp.asarray(c) for c in cts]
        args = (params, rest, xs_float, mask_args(masks or {}), cts)
        failed: list = []  # filled by a trace that fails: the calls it made (for the message)
        try:
            if abstract:
                outs, arrays, new_rest, grads = jax.eval_shape(functools.partial(self._pass, pairing), *args)
            else:
                outs, arrays, new_rest, grads = self._jit(pairing, *args)
        except Exception:
            failed = self.meta
            with framework_errors("Flax", self.shapes, failed):
                raise
        meta = self._metas[self._key(pairing, args[3], cts)]  # from this function's trace, cached or not
        get = (lambda i: None) if abstract else (lambda i: None if i is None else np.asarray(arrays[i]))
        calls = [trace.Call(m.leaf, m.index, get(m.inp), get(m.out), m.called_at, m.in_shape, m.out_shape)
                 for m in meta]  # meta holds indices into `arrays` where calls hold arrays
        return calls, outs, new_rest, grads
