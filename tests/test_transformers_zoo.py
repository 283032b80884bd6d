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


def test_port_census_on_two_architectures(tmp_path, capsys):
    """scripts/port_census.py on PoolFormer (fx-traceable) and BERT (not): the JSON records both paths."""
    spec = importlib.util.spec_from_file_location("port_census", ZOO_PATH.parents[1] / "scripts" / "port_census.py")
    census = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(census)
    out = tmp_path / "census.json"
    assert census.main(["--only", "poolformer,bert", "--out", str(out)]) == 0
    import json
    data = json.loads(out.read_text())
    archs = data["architectures"]
    assert set(archs) == {"poolformer", "bert"}
    assert archs["poolformer"]["fx"]["ok"] and archs["poolformer"]["fx"]["max_diff"] == 0
    assert "module:torch.nn.modules.conv.Conv2d" in archs["poolformer"]["fx"]["ops"]
    assert not archs["bert"]["fx"]["ok"] and archs["bert"]["fx"]["error"]
    for name in archs:
        ex = archs[name]["export"]
        assert ex["ok"] and ex["max_diff"] == 0 and ex["ops"] and ex["module_classes"]
    assert "aten.embedding.default" in archs["bert"]["export"]["ops"]
    assert not list(tmp_path.glob(".census-*"))  # the temp file was renamed into place
    assert "poolformer" in capsys.readouterr().out
