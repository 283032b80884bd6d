"""The Trainers' fast paths keep their results: what makes them fast is checked structurally (no
per-step transfer, one compiled step, fused optimisers), never by wall time (that is `parity bench
train.<model>.adam.trainer_vs_minimal`'s job), and every fast path must give the slow path's numbers.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jax_impl as J
import torch_impl as T
from parity import bridge, data, training
from parity.concepts import optim as P
from parity.tolerances import lookup


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


def _side(fw, model, ds, optimizer="adam", dtype="float32"):
    cfg = training.Config(model=model, optimizer=optimizer, dtype=dtype).resolved()
    ds = training.load_data(cfg, ds)
    kw = training.model_kwargs(model, ds)
    sd = training.init_state_dict(training.build(model, kw, "torch", dtype), np.random.default_rng(0))
    return training.SIDES[fw](cfg, kw, sd, ds)


def _rows(ds, n=5):
    return data.Shuffler(len(ds.x_train), 64, seed=3).epoch()[:n]


@pytest.mark.parametrize("model,dtype", [("simple_net", "float32"), ("small_cnn", "float64")])
def test_jax_step_step_at_and_epoch_agree_bitwise(digits, model, dtype):
    """A NumPy row per `step`, device rows with `step_at`, and one `epoch` scan: the same losses
    and weights, bit for bit (the row is the same gather; the scan compiles the same step), except
    that XLA:CPU compiles a convolution inside the scan's loop differently: small_cnn's scanned
    weights differ by an ulp (measured 6.9e-17 in float64 after 5 steps), which is why `parity
    train` steps the CNN on the CPU (`training.scan_allowed`) and its curves stay bitwise as before."""
    rows = _rows(digits)
    runs = []
    for how in ("step", "step_at", "epoch"):
        s = _side("jax", model, digits, dtype=dtype)
        tr = s.trainer
        if how == "step":
            losses = [tr.step(s.x, s.y, r) for r in rows]
        elif how == "step_at":
            dev = jax.device_put(rows.astype(np.int32))
            losses = [tr.step_at(s.x, s.y, dev, i) for i in range(len(rows))]
        else:
            losses = tr.epoch(s.x, s.y, rows)
        runs.append((np.asarray(jnp.stack(losses) if isinstance(losses, list) else losses), s.weights()))
    tol = lookup(dtype, "cpu")
    for how, (losses, weights) in zip(("step_at", "epoch"), runs[1:]):
        np.testing.assert_array_equal(losses, runs[0][0])
        for k in weights:
            if how == "epoch" and model == "small_cnn":
                np.testing.assert_allclose(weights[k], runs[0][1][k], rtol=tol.rtol, atol=tol.atol, err_msg=k)
            else:
                np.testing.assert_array_equal(weights[k], runs[0][1][k], err_msg=f"{how} {k}")


def test_jax_device_rows_are_not_transferred_per_step(digits):
    """With the rows on the device, a step moves nothing from the host: not the row (`step` with an
    int32 device row), not the row number (`step_at` keeps one device scalar per row number)."""
    s = _side("jax", "simple_net", digits)
    tr, rows = s.trainer, jax.device_put(_rows(digits).astype(np.int32))
    tr.step_at(s.x, s.y, rows, 0)
    tr.step_at(s.x, s.y, rows, 1)
    row = rows[2]
    tr.step(s.x, s.y, row)
    with jax.transfer_guard_host_to_device("disallow"):
        tr.step_at(s.x, s.y, rows, 0)
        tr.step_at(s.x, s.y, rows, 1)
        tr.step(s.x, s.y, row)
    with pytest.raises(Exception, match="Disallowed host-to-device transfer"):  # the guard does guard:
        with jax.transfer_guard_host_to_device("disallow"):  # a Python int row number is transferred
            tr._step(tr._leaves, s.x, s.y, rows, 1)


def test_jax_state_is_flat_between_steps_and_rebuilt_on_demand(digits):
    s = _side("jax", "simple_net", digits)
    tr = s.trainer
    before = tr.state
    assert isinstance(tr._leaves, tuple) and all(isinstance(a, jax.Array) for a in tr._leaves)
    tr.step(s.x, s.y, _rows(digits)[0])
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(before))  # donated, as before
    params, rest, opt_state = tr.state
    assert jax.tree.structure(tr.state) == jax.tree.structure(before)
    tr.state = jax.tree.map(jnp.copy, tr.state)  # a state of the same structure is taken
    with pytest.raises(ValueError, match="structure differs"):
        tr.state = (params, rest)


@pytest.mark.parametrize("model", ["simple_net", "small_cnn"])
def test_parity_train_compiles_one_function_for_every_run_of_rows(digits, model):
    """Whole free-running epochs, the forced side's parts between segment boundaries and replayed
    segments are padded with skipped rows to one length, so one compiled function serves them all:
    the epoch scan where the model allows it, else the step (small_cnn on the CPU)."""
    assert training.scan_allowed("simple_net", "cpu") and not training.scan_allowed("small_cnn", "cpu")
    assert training.scan_allowed("small_cnn", "cuda")
    run = training.train(training.Config(model=model, epochs=2), digits)
    tr = run.trainers["jax"]
    scans = training.scan_allowed(model, "cpu")
    assert (tr._epoch._cache_size(), tr._step._cache_size()) == ((1, 0) if scans else (0, 1))
    assert run.curve_verdict().ok
    assert len(run.losses["jax"]) == len(run.forced_losses) == len(run.losses["torch"])


def test_skipped_rows_are_no_steps(digits):
    """A row of negative indices pads a run of rows: no step, a nan loss, in both twins."""
    rows = _rows(digits, 3)
    padded = np.concatenate([rows, np.full((2, rows.shape[1]), -1)])
    for fw in ("jax", "torch"):
        a, b = _side(fw, "simple_net", digits), _side(fw, "simple_net", digits)
        conv = (lambda r: r) if fw == "jax" else torch.as_tensor
        la = np.asarray(a.trainer.epoch(a.x, a.y, conv(rows)))
        lb = np.asarray(b.trainer.epoch(b.x, b.y, conv(padded)))
        np.testing.assert_array_equal(lb[:3], la)
        assert np.isnan(lb[3:]).all()
        wa, wb = a.weights(), b.weights()
        assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_fork_shares_the_compiled_step_not_the_state(digits):
    s = _side("jax", "simple_net", digits)
    twin = s.fork()
    assert twin.trainer._step is s.trainer._step and twin.trainer._epoch is s.trainer._epoch
    rows = _rows(digits)
    twin.epoch(rows)
    assert all(not a.is_deleted() for a in s.trainer._leaves)
    a, b = s.weights(), twin.weights()
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # only the fork moved


def test_torch_library_path_is_fused_where_torch_has_it():
    """from_library picks fused kernels on the CPU (torch >= 2.4 has them for SGD, Adam and AdamW)
    and falls back to foreach for parameters fused cannot take (complex ones)."""
    for name in ("sgd", "adam", "adamw"):
        opt = T.optim.from_library(name)([torch.zeros(3, requires_grad=True)])
        assert opt.defaults.get("fused") is True and not opt.defaults.get("foreach")
        opt = T.optim.from_library(name)([torch.zeros(3, dtype=torch.complex64, requires_grad=True)])
        assert opt.defaults.get("foreach") is True and not opt.defaults.get("fused")
    tr = T.train.Trainer(T.models.SimpleNet(64), T.optim.from_library("adam"), F.cross_entropy)
    assert tr.optimizer.defaults["fused"] is True


@pytest.mark.parametrize("name,hyper", [("sgd", dict(lr=0.05, momentum=0.9)), ("adam", dict(lr=0.01)),
                                        ("adamw", dict(lr=0.01, weight_decay=0.3))])
def test_fused_and_foreach_agree_after_100_steps(name, hyper):
    """The fused kernels round differently from foreach; after 100 steps of the optimiser problem
    the parameters stay within float32's parity tolerance (measured: at most 8.9e-8 apart)."""
    tol = lookup("float32", "cpu")
    prob = bridge.to_torch(P.problem(np.random.default_rng(7), np.dtype("float32")))
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    fused = P.run_torch_optim(T.optim.from_library(name, **hyper), prob, 100)
    foreach = P.run_torch_optim(lambda ps: cls(list(ps), **hyper, foreach=True), prob, 100)
    for a, b in zip(fused, foreach):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol.rtol, atol=tol.atol, err_msg=tol.source)


def test_torch_epoch_and_step_at_are_steps(digits):
    rows = torch.as_tensor(_rows(digits))
    got = []
    for how in ("step", "step_at", "epoch"):
        s = _side("torch", "simple_net", digits)
        tr = s.trainer
        if how == "step":
            got.append(torch.stack([tr.step(s.x, s.y, r) for r in rows]))
        elif how == "step_at":
            got.append(torch.stack([tr.step_at(s.x, s.y, rows, i) for i in range(len(rows))]))
        else:
            got.append(tr.epoch(s.x, s.y, rows))
    for g in got[1:]:
        assert torch.equal(g, got[0])


def test_jax_eager_bench_mode_repeats_the_step_count():
    """The jax-eager training mode puts the state back before each call, so optax's step count (and
    the integer_pow it compiles op by op) is the same every time: it times dispatch, not compiling."""
    from benchmarks import workloads
    r = workloads.WORKLOADS["train.linear_net.adam"].build(2, "cpu", "float32")["jax-eager"]()
    with r.context():
        losses = [float(r.call()) for _ in range(3)]
    assert losses[0] == losses[1] == losses[2]  # the same step from the same state


def test_trainer_vs_minimal_workloads_train_alike():
    """Every implementation a trainer_vs_minimal workload times takes the same first step."""
    from benchmarks import workloads
    tol = lookup("float32", "cpu")
    runners = workloads.WORKLOADS["train.simple_net.adam.trainer_vs_minimal"].build(8, "cpu", "float32")
    firsts = {}
    for mode, make in runners.items():
        r = make()
        with r.context():
            firsts[mode] = [float(np.asarray(r.call()).reshape(-1)[i]) for i in (0,)][0]
    ref = firsts["torch-minimal"]
    for mode, v in firsts.items():
        np.testing.assert_allclose(v, ref, rtol=tol.rtol, atol=tol.atol, err_msg=mode)
