"""Training in JAX: one jitted, buffer-donating step over the split state of an NNX model.

The model is split once (`nnx.split`) into a graph definition and arrays; the step is a pure
function of (params, rest, optimizer state) that `jax.jit` compiles once and whose input buffers
it reuses (`donate_argnums`); non-parameter state the forward pass updates (BatchNorm's running
statistics) comes back from it as the step's new `rest`. torch's twin mutates the module and its optimiser in place.
Training and prediction differ only in static attributes (Dropout's `deterministic`, BatchNorm's
`use_running_average`), so each mode has its own graph definition over the same state.
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
        self.graphdef, self.state = graphdef, jax.device_put((params, rest, optimizer.init(params)), device)

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

        def predict(params, rest, x):
            return nnx.merge(eval_graphdef, params, rest)(x)

        #: the pure step `(state, x, y, idx) -> (state, loss)`, unjitted: compose it (e.g. in
        #: `lax.scan` over a whole epoch) and jit the result; `step` below is its jitted form
        self.step_fn = train_step
        self._step = jax.jit(train_step, donate_argnums=0)
        self._predict = jax.jit(predict)

    def step(self, x, y, idx=None):
        """One update on the batch x[idx], y[idx] (all of x, y when idx is None); returns the loss."""
        if idx is not None:
            idx = jnp.asarray(idx, jnp.int32)
        self.state, loss = self._step(self.state, x, y, idx)
        return loss

    def predict(self, x):
        """The model's outputs for x under the current parameters (eval mode)."""
        return self._predict(self.state[0], self.state[1], x)

    def accuracy(self, x, y):
        """Fraction of rows of x whose largest output is at the label in y."""
        return int(jnp.sum(jnp.argmax(self.predict(x), axis=-1) == y)) / len(y)

    @property
    def model(self):
        """A fresh module holding a copy of the current parameters."""
        params, rest, _ = self.state
        return nnx.merge(self.graphdef, jax.tree.map(jnp.copy, params), rest)
