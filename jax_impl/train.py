"""Training in JAX: one jitted, buffer-donating step over the split state of an NNX model.

The model is split once (`nnx.split`) into a graph definition and arrays; the step is a pure
function of (params, rest, optimizer state) that `jax.jit` compiles once and whose input buffers
it reuses (`donate_argnums`); non-parameter state the forward pass updates (BatchNorm's running
statistics) comes back from it as the step's new `rest`. torch's twin mutates the module and its optimiser in place.
Training and prediction differ only in static attributes (Dropout's `deterministic`, BatchNorm's
`use_running_average`), so each mode has its own graph definition over the same state.

Between steps the state is kept as its flat tuple of arrays: jit flattens a tuple of arrays far
faster than the nested `nnx.State` is flattened and rebuilt, which would cost about as much as the
step itself (docs/measurements.md, "The JAX trainer", has the figures for this module). `state`
rebuilds it on demand. An index row that is already an int32 device array goes straight in; a
NumPy row is transferred first, which costs about a step: put an epoch's rows on the device once
and use `step_at`, or run the rows in one `lax.scan` with `epoch`.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.optim import apply_updates


class Trainer:
    """Trains `model` with an optax-style `optimizer` on `loss_fn(outputs, targets)`.

    Data stays on the device; a step returns its loss as a device scalar, so nothing waits on the
    host until losses are read. The caller's model is copied, never donated; steps run it in training
    mode and `predict` in eval mode, as torch's twin switches its module.
    """

    def __init__(self, model, optimizer, loss_fn):
        model = nnx.clone(model)  # switching modes below leaves the caller's module as it was
        model.eval()
        eval_graphdef = nnx.graphdef(model)
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params, rest = jax.tree.map(jnp.copy, (params, rest))  # the step donates these buffers
        # all of the state committed to the parameters' device, as the step's outputs will be:
        # otherwise the second call (uncommitted → committed inputs) compiles the step again
        device = jax.tree.leaves(params)[0].device
        self.graphdef = graphdef
        self.state = jax.device_put((params, rest, optimizer.init(params)), device)
        treedef = self._treedef

        def train_step(state, x, y, idx):
            params, rest, opt_state = state
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])

            model = nnx.merge(graphdef, params, rest)
            # nnx's transform (not jax's) so the forward pass may update non-parameter state
            # (BatchNorm's running statistics); gradients are taken for the Params only
            loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(xb), yb),
                                             argnums=nnx.DiffState(0, nnx.Param))(model)
            rest = nnx.split(model, nnx.Param, ...)[2]
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (apply_updates(params, updates), rest, opt_state), loss

        def flat_step(leaves, x, y, idx, i):
            # idx: a batch's indices, or with i, the rows of indices whose row i is the batch
            state, loss = train_step(jax.tree.unflatten(treedef, leaves), x, y, idx if i is None else idx[i])
            return tuple(treedef.flatten_up_to(state)), loss

        def flat_epoch(leaves, x, y, rows):
            def body(carry, idx):  # a row of negative indices pads the epoch: no step, a nan loss
                def skip(c):
                    return c, jnp.full(loss_shape.shape, jnp.nan, loss_shape.dtype)
                return jax.lax.cond(idx[0] >= 0, lambda c: flat_step(c, x, y, idx, None), skip, carry)
            loss_shape = jax.eval_shape(lambda c: flat_step(c, x, y, rows[0], None), leaves)[1]
            return jax.lax.scan(body, leaves, rows)

        def predict(leaves, x):
            params, rest, _ = jax.tree.unflatten(treedef, leaves)
            return nnx.merge(eval_graphdef, params, rest)(x)

        #: the pure step `(state, x, y, idx) -> (state, loss)` over the nested state (`state`),
        #: unjitted: compose it (e.g. in `lax.scan` over a whole epoch) and jit the result
        self.step_fn = train_step
        # the jitted step over the flat state; a caller may replace `_step` with its own jitted step
        # over the nested state (parity.distributed shards it), which `step` then calls with `state`
        self._flat_step = self._step = jax.jit(flat_step, donate_argnums=0)
        self._epoch = jax.jit(flat_epoch, donate_argnums=0)
        self._positions = {}  # row number → its device scalar (`_position`)
        self._predict = jax.jit(predict)

    @property
    def state(self):
        """(params, rest, optimizer state) as nested pytrees (nnx.State for the model's parts),
        rebuilt from the flat arrays the steps keep; assigning one replaces them."""
        return jax.tree.unflatten(self._treedef, self._leaves)

    @state.setter
    def state(self, value):
        leaves, treedef = jax.tree.flatten(value)
        if getattr(self, "_treedef", treedef) != treedef:
            raise ValueError(f"Trainer.state: the new state's structure differs from the trainer's: "
                             f"{treedef} is not {self._treedef}")
        self._leaves, self._treedef = tuple(leaves), treedef

    def step(self, x, y, idx=None):
        """One update on the batch x[idx], y[idx] (all of x, y when idx is None); returns the loss."""
        idx = None if idx is None else _indices(idx)
        if self._step is self._flat_step:
            self._leaves, loss = self._step(self._leaves, x, y, idx, None)
        else:
            self.state, loss = self._step(self.state, x, y, idx)
        return loss

    def step_at(self, x, y, rows, i):
        """`step` on the batch of row i of `rows` (k, batch): x[rows[i]], y[rows[i]]. Rows already on
        the device (an int32 array) stay there for the whole epoch: nothing is transferred per step,
        and one compiled step serves every i (rows of one shape: pad a short epoch's rows)."""
        rows = _indices(rows)
        if self._step is not self._flat_step:  # a replaced step takes one row
            return self.step(x, y, rows[i])
        self._leaves, loss = self._step(self._leaves, x, y, rows, self._position(i))
        return loss

    def _position(self, i):
        """Row number i as a device scalar, made once per trainer: a Python int would be
        transferred on every call (a few per cent of simple_net's step)."""
        if isinstance(i, jax.Array):
            return i
        at = self._positions.get(i)
        if at is None:
            at = self._positions[i] = jax.device_put(jnp.int32(i), self._leaves[0].device)
        return at

    def epoch(self, x, y, rows):
        """One update per row of `rows` (k, batch): the batches x[row], y[row] in order, as k calls
        of `step` would make them, in one `lax.scan` (compiled once per k); returns the k losses
        (faster than k `step` calls for simple_net).
        A row whose first index is negative is skipped (its loss is nan): pad runs of rows of
        different lengths to one k, and one compiled scan serves them all.

        XLA:CPU runs convolutions inside a loop many times slower than outside one (small_cnn's Adam
        step), so on the CPU a convolutional model is better trained by `step_at`.
        """
        rows = _indices(rows)
        if self._step is not self._flat_step:  # a replaced step runs one call per row
            nan, keep = jnp.full((), jnp.nan), jax.device_get(rows[:, 0] >= 0)  # one read of the rows
            return jnp.stack([self.step(x, y, r) if k else nan for r, k in zip(rows, keep)])
        self._leaves, losses = self._epoch(self._leaves, x, y, rows)
        return losses

    def predict(self, x):
        """The model's outputs for x under the current parameters (eval mode)."""
        return self._predict(self._leaves, x)

    def accuracy(self, x, y):
        """Fraction of rows of x whose largest output is at the label in y."""
        return int(jnp.sum(jnp.argmax(self.predict(x), axis=-1) == y)) / len(y)

    @property
    def model(self):
        """A fresh module holding a copy of the current parameters."""
        params, rest, _ = self.state
        return nnx.merge(self.graphdef, jax.tree.map(jnp.copy, params), rest)


def _indices(idx):
    """Index arrays as int32 device arrays (one dtype, so one compiled step); a device int32 array
    as it is (converting NumPy costs a transfer per row)."""
    return idx if isinstance(idx, jax.Array) and idx.dtype == jnp.int32 else jnp.asarray(idx, jnp.int32)
