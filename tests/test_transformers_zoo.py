"""The Hugging Face zoo of examples/transformers_zoo.py: every architecture builds from its tiny config,
is a float32 module in eval mode with parameters, and returns one floating tensor, the same on a
second call; the registry holds at least 20 architectures over vision, text and audio."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

ZOO_PATH = Path(__file__).resolve().parents[1] / "examples" / "transformers_zoo.py"
_spec = importlib.util.spec_from_file_location("transformers_zoo", ZOO_PATH)
zoo = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("transformers_zoo", zoo)  # dataclasses look their module up by name
_spec.loader.exec_module(zoo)


def test_registry_size_and_domains():
    archs = zoo.ARCHITECTURES
    assert len(archs) >= 20
    domains = {a.domain for a in archs.values()}
    assert domains == {"vision", "text", "audio"}
    for name, a in archs.items():
        assert a.name == name
        assert a.domain in ("vision", "text", "audio")
    for domain in ("vision", "text", "audio"):
        assert sum(a.domain == domain for a in archs.values()) >= 3


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
def test_builds_and_runs_deterministically(name):
    model, inputs = zoo.ARCHITECTURES[name].build()
    assert isinstance(model, torch.nn.Module)
    assert not model.training and not any(m.training for m in model.modules())
    params = list(model.parameters())
    assert params and all(p.dtype == torch.float32 for p in params)
    assert isinstance(inputs, tuple) and inputs and all(isinstance(x, torch.Tensor) for x in inputs)
    with torch.no_grad():
        y1 = model(*inputs)
        y2 = model(*inputs)
    assert isinstance(y1, torch.Tensor) and y1.is_floating_point() and y1.dtype == torch.float32
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)


def test_seeded_build():
    """Two builds of one architecture hold the same weights (torch.manual_seed(0) before construction)."""
    a, _ = zoo.ARCHITECTURES["bert"].build()
    b, _ = zoo.ARCHITECTURES["bert"].build()
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
