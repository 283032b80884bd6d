"""Concepts of the optimisers: the from-scratch twins run N steps on one fixed problem.

The problem is a small non-linear regression, loss = mean((tanh(x·w + b) − y)²), whose gradients
each framework computes itself; the compared outputs are the parameters after the last step.
The `run_*` helpers also serve tests/test_optim_*.py, which add torch.optim and optax (three ways).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jax_impl as J
import torch_impl as T
from parity.concept import Concept, Leaf, Sample

CONCEPTS: list[Concept] = []
STEPS = 10  # enough for momentum and bias correction to matter; tests/test_optim_*.py run 100


def problem(rng: np.random.Generator, dt, n: int = 16, d: int = 4, k: int = 3) -> dict:
    """Data and initial parameters of the fixed problem, drawn once in NumPy."""
    return {"x": rng.standard_normal((n, d)).astype(dt), "y": rng.uniform(-0.9, 0.9, (n, k)).astype(dt),
            "w": (0.5 * rng.standard_normal((d, k))).astype(dt), "b": np.zeros(k, dt)}


def _jax_loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["w"] + p["b"]) - y) ** 2)


def _torch_loss(p, x, y):
    return torch.mean((torch.tanh(x @ p["w"] + p["b"]) - y) ** 2)


def run_jax(tx, inputs: dict, steps: int):
    """Parameters (w, b) after `steps` updates of an optax-style transformation (jittable)."""
    params = {"w": inputs["w"], "b": inputs["b"]}

    def body(_, carry):
        p, s = carry
        updates, s = tx.update(jax.grad(_jax_loss)(p, inputs["x"], inputs["y"]), s, p)
        return J.optim.apply_updates(p, updates), s

    p, _ = jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))
    return p["w"], p["b"]


def run_torch(tx, inputs: dict, steps: int):
    """Parameters (w, b) after `steps` updates of a pure (init, update) pair of tensors."""
    p = {"w": inputs["w"].detach().clone(), "b": inputs["b"].detach().clone()}
    s = tx.init(p)
    for _ in range(steps):
        p = {k: v.requires_grad_(True) for k, v in p.items()}
        g = dict(zip(p, torch.autograd.grad(_torch_loss(p, inputs["x"], inputs["y"]), list(p.values()))))
        updates, s = tx.update(g, s, {k: v.detach() for k, v in p.items()})
        p = T.optim.apply_updates({k: v.detach() for k, v in p.items()}, updates)
    return p["w"], p["b"]


def run_torch_optim(make, inputs: dict, steps: int):
    """Parameters after `steps` of a torch.optim optimiser built by `make(params)`."""
    p = {"w": inputs["w"].detach().clone().requires_grad_(True),
         "b": inputs["b"].detach().clone().requires_grad_(True)}
    opt = make(p.values())
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        _torch_loss(p, inputs["x"], inputs["y"]).backward()
        opt.step()
    return p["w"].detach(), p["b"].detach()


# name -> (sample label, hyperparameters) pairs; the same settings in both frameworks
CASES = {
    "sgd": [("momentum 0.9", dict(lr=0.05, momentum=0.9)),
            ("dampening 0.5, wd 0.1", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1)),
            ("nesterov, wd 0.01", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01))],
    "adam": [("L2 wd 0.1", dict(lr=0.01, weight_decay=0.1)),
             ("betas (0.8, 0.99) eps 1e-3", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3))],
    "adamw": [("defaults lr=0.01 (wd 1e-2)", dict(lr=0.01))],
}


def _samples(name):
    def samples(rng, dt):
        return [Sample(label, problem(rng, dt), kwargs={"hyper": tuple(sorted(h.items()))})
                for label, h in CASES[name]]
    return samples


for _name, _summary in (("sgd", "SGD with momentum, dampening, nesterov, coupled weight decay"),
                        ("adam", "Adam with bias correction, eps outside the root, coupled L2"),
                        ("adamw", "AdamW: decoupled weight decay (default 1e-2)")):
    # one leaf name in both twins; each side runs it with its own framework's gradients
    CONCEPTS.append(Concept(
        name=f"optim.{_name}", group="optim", traps=(21, 19) if _name == "sgd" else (19,),
        summary=f"{_summary}: parameters after {STEPS} steps",
        samples=_samples(_name),
        jax=Leaf("jax_impl", f"optim.{_name}", lambda f, p, x, hyper: run_jax(f(**dict(hyper)), x, STEPS)),
        torch=Leaf("torch_impl", f"optim.{_name}", lambda f, p, x, hyper: run_torch(f(**dict(hyper)), x, STEPS)),
        covers=(f"optim.{_name}",) + (("optim.apply_updates",) if _name == "sgd" else ()),
        differentiable=False))

CONCEPTS.append(Concept(
    name="optim.from_library", group="optim", traps=(21, 19),
    summary=f"optax vs torch.optim (foreach) built by from_library: parameters after {STEPS} steps",
    samples=lambda rng, dt: [Sample(f"{name} {label}", problem(rng, dt),
                                    kwargs={"name": name, "hyper": tuple(sorted(h.items()))})
                             for name in CASES for label, h in CASES[name][-1:]],  # optax.sgd: no dampening
    jax=lambda p, x, name, hyper: run_jax(J.optim.from_library(name, **dict(hyper)), x, STEPS),
    torch=lambda p, x, name, hyper: run_torch_optim(T.optim.from_library(name, **dict(hyper)), x, STEPS),
    covers=("optim.from_library",), differentiable=False))
