"""Bad input to `parity.compare` gets one clear line (PortingError, a ValueError) or documented
behaviour, never a framework traceback and never a pass: layer trees that do not correspond,
shapes that do not match after conversion, inputs of the wrong rank or with NaN, a Flax model that
needs rngs, Dropout/BatchNorm modes, devices, and arguments of the wrong kind."""
import jax
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from parity import precision
from parity.porting import PortingError, compare, compare_training
from parity.porting.core import EVAL_NOTE

RNG = np.random.default_rng(2)
X = RNG.standard_normal((5, 4)).astype(np.float32)


class _Torch3(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


class _Flax3(nnx.Module):
    def __init__(self, widths=(8, 3), *, rngs):
        self.a = nnx.Linear(4, widths[0], rngs=rngs)
        self.b = nnx.Linear(widths[0], widths[1], rngs=rngs)
        self.c = nnx.Linear(widths[1], 2, rngs=rngs)

    def __call__(self, x):
        return self.c(jax.nn.relu(self.b(jax.nn.relu(self.a(x)))))


class _Flax2(nnx.Module):
    def __init__(self, *, rngs):
        self.a, self.b = nnx.Linear(4, 8, rngs=rngs), nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.b(jax.nn.relu(self.a(x)))


def _error(*args, **kwargs) -> str:
    with pytest.raises(PortingError) as e:
        compare(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_the_control_pair_passes():
    assert compare(_Torch3(), _Flax3(rngs=nnx.Rngs(0)), X, dtype="float64").passed


def test_layer_trees_that_do_not_correspond_are_refused_naming_the_first_unpaired_layer():
    msg = _error(_Torch3(), _Flax2(rngs=nnx.Rngs(0)), X)
    assert "layer 3 in execution order pairs torch `c`" in msg and "with no Flax layer" in msg
    assert "torch runs 3 layers [linear, linear, linear], Flax 2 [linear, linear]" in msg


def test_layers_of_different_kinds_are_refused():
    class FlaxNorm(_Flax3):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            self.b = nnx.LayerNorm(8, rngs=rngs)  # where torch has a Linear

        def __call__(self, x):
            return self.c(jax.nn.relu(self.b(jax.nn.relu(self.a(x))))[..., :3])
    msg = _error(_Torch3(), FlaxNorm(rngs=nnx.Rngs(0)), X)
    assert "torch `b` (linear, Linear" in msg and "flax `b` (layernorm, LayerNorm" in msg


def test_parameter_shapes_that_do_not_match_after_conversion_are_refused_naming_the_pair():
    msg = _error(_Torch3(), _Flax3((8, 4), rngs=nnx.Rngs(0)), X)
    assert "pair 2: torch `b` (Linear" in msg
    assert "`kernel` converts to shape (8, 3), the Flax layer holds (8, 4)" in msg


def test_a_bias_on_one_side_only_is_refused():
    class FlaxNoBias(_Flax3):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            self.c = nnx.Linear(3, 2, use_bias=False, rngs=rngs)
    msg = _error(_Torch3(), FlaxNoBias(rngs=nnx.Rngs(0)), X)
    assert "torch has `bias`, the Flax layer holds no `bias`" in msg


class _TorchConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


class _FlaxConv(nnx.Module):
    def __init__(self, *, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs)

    def __call__(self, x):
        return self.conv(x).mean((1, 2))


def test_an_input_of_the_wrong_rank_is_refused():
    good = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert compare(_TorchConv(), _FlaxConv(rngs=nnx.Rngs(0)), good).passed
    # torch's Conv2d would take (C, H, W) as one unbatched image; the NHWC rule would not follow
    msg = _error(_TorchConv(), _FlaxConv(rngs=nnx.Rngs(0)), good[0])
    assert "torch `conv` (Conv2d) received a 3-D input (3, 6, 6): give batched 4-D (N, C, H, W) inputs" in msg
    msg = _error(_Torch3(), _Flax3(rngs=nnx.Rngs(0)), RNG.standard_normal((5, 6)))
    assert msg.startswith("the torch model failed on inputs of shape (5, 6): RuntimeError:")


def test_a_flax_model_that_needs_rngs_is_told_how_to_pass_them():
    class FlaxRngs(_Flax3):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            self.drop = nnx.Dropout(0.5)

        def __call__(self, x, *, rngs):
            return self.c(self.drop(jax.nn.relu(self.b(jax.nn.relu(self.a(x)))), rngs=rngs))
    msg = _error(_Torch3(), FlaxRngs(rngs=nnx.Rngs(0)), X)
    assert "needs `rngs`: pass flax_kwargs={'rngs': nnx.Rngs(0)}" in msg
    r = compare(_Torch3(), FlaxRngs(rngs=nnx.Rngs(0)), X, flax_kwargs={"rngs": nnx.Rngs(0)})
    assert r.passed  # eval mode: the Dropout is the identity and draws nothing


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_refused(bad):
    x = X.copy()
    x[1, 2] = bad
    assert "NaN would compare equal to NaN" in _error(_Torch3(), _Flax3(rngs=nnx.Rngs(0)), x)


def test_dropout_and_batchnorm_are_compared_in_eval_mode_unless_asked():
    class TorchDrop(_Torch3):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.c(self.drop(torch.relu(self.b(torch.relu(self.a(x))))))

    torch_model = TorchDrop().train()  # the caller's mode is not what is compared
    r = compare(torch_model, _Flax3(rngs=nnx.Rngs(0)), X)
    assert r.passed and not r.train and EVAL_NOTE in r.notes and torch_model.training
    r = compare(TorchDrop(), _Flax3(rngs=nnx.Rngs(0)), X, train=True)
    assert not r.passed  # torch drops, the port never does: training mode shows it
    assert any("has no Flax Dropout module to pair with" in n for n in r.notes)


def test_devices_are_checked():
    with torch.device("meta"):
        meta = _Torch3()
    assert "on the 'meta' device" in _error(meta, _Flax3(rngs=nnx.Rngs(0)), X)
    if not precision.cuda_available():
        assert _error(_Torch3(), _Flax3(rngs=nnx.Rngs(0)), X, device="cuda").startswith("device 'cuda':")


def test_arguments_of_the_wrong_kind_are_refused():
    t, f = _Torch3(), _Flax3(rngs=nnx.Rngs(0))
    assert "swapped" in _error(f, t, X)
    assert "dtype must be one of 'float32', 'float64'" in _error(t, f, X, dtype="float16")
    assert "layout must be one of" in _error(t, f, X, layout="nwhc")
    assert "weights must be" in _error(t, f, X, weights=3)
    assert "the torch model takes 1 input(s), 2 given" in _error(t, f, (X, X))
    assert "empty" in _error(t, f, np.zeros((0, 4), np.float32))
    assert "weights mapping: torch model has no layer or parameter `zz`" in _error(t, f, X, weights={"zz": "a"})
    assert "layout 'TT' is none of" in _error(t, f, X, weights={"a.weight": ("a.kernel", "TT")})
    assert "the Flax model has no layer at that path" in _error(t, f, X, weights={"a": "a", "b": "z", "c": "c"})
    shapes = _error(t, f, X, weights=lambda sd: {"a": {"kernel": np.zeros((8, 4), np.float32)}})
    assert "weights callable: `a.kernel` has shape (8, 4), the Flax model holds (4, 8)" in shapes


def test_a_layer_of_an_unknown_kind_is_refused():
    class TorchAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.PReLU(4)  # one slope per channel: stock nnx.PReLU has one slope only

        def forward(self, x):
            return self.act(x)

    class FlaxAct(nnx.Module):
        def __init__(self):
            self.act = nnx.PReLU()

        def __call__(self, x):
            return self.act(x)
    msg = _error(TorchAct(), FlaxAct(), RNG.standard_normal((2, 4)))
    assert "torch `act` (PReLU" in msg and "of no kind automatic pairing knows" in msg
    assert "register_kind" in msg


def test_outputs_that_differ_in_number_fail_rather_than_pass():
    class FlaxTwo(_Flax3):
        def __call__(self, x):
            y = super().__call__(x)
            return y, y
    r = compare(_Torch3(), FlaxTwo(rngs=nnx.Rngs(0)), X)
    assert not r.passed and r.first_divergence.what == "model output"
    assert "torch returns 1 outputs, Flax 2" in r.first_divergence.message


def test_compare_training_refuses_bad_arguments():
    t, f = _Torch3(), _Flax3(rngs=nnx.Rngs(0))
    import optax
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    for kwargs, text in (({"batches": []}, "no batches"), ({"steps": 0}, "steps must be an integer >= 1"),
                         ({"loss": "hinge"}, "loss must be"), ({"optax_tx": "adam"}, "optax_tx must be")):
        args = {"batches": [(X, RNG.standard_normal((5, 2)))], "torch_optimizer_factory": sgd,
                "optax_tx": optax.sgd(0.1), "steps": 1, **kwargs}
        with pytest.raises(PortingError, match=text):
            compare_training(t, f, **args)


def test_unshared_dropout_masks_leave_float32_to_the_fixed_rule():
    """In training mode an unpaired torch Dropout draws masks of its own in a float64 run too, so that
    run is no reference: the scaled rule steps aside, says so, and the difference still fails."""
    class TorchDrop(_Torch3):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.c(self.drop(torch.relu(self.b(torch.relu(self.a(x))))))

    r = compare(TorchDrop(), _Flax3(rngs=nnx.Rngs(0)), X, train=True, dtype="float32")
    assert not r.passed and r.rule == "fixed"
    assert any("judged by the fixed tolerance, not the scaled rule: torch drop draws masks" in n for n in r.notes)
