"""What `parity compare` reaches of `parity.porting.compare` from the command line
(parity/commands/compare.py): call arguments for either model (--torch-kwargs, --flax-kwargs, the
Flax "rngs" spelling), a name map (--map), the user's own layer kinds (--kinds), the verdict rule
(--rule), notes printed once and only where they bear on what is compared, and JAX's compilation
cache. Each flag is shown to take effect (a model that needs it fails without it and passes with
it); bad input exits 2 with one line naming the flag. No test asserts on time."""
import json

import jax
import pytest
import torch

from parity.cli import main
from parity.commands import compare as compare_cmd
from parity.porting import kinds

MODELS = '''
import torch
from torch import nn
from flax import nnx
import jax.numpy as jnp


class T(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class F(nnx.Module):
    def __init__(self, *, rngs):
        self.fc = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc(x)


class TScaled(T):
    def forward(self, x, *, scale):
        return self.fc(x) * scale


class FScaled(F):
    def __call__(self, x, *, scale):
        return self.fc(x) * scale


class FNeedsRngs(F):
    def __call__(self, x, *, rngs):
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs is a {type(rngs).__name__}")
        return self.fc(x)


class FNeedsDropoutStream(F):
    def __call__(self, x, *, rngs):
        if "dropout" not in rngs:
            raise KeyError("no 'dropout' stream")
        return self.fc(x)


class TMat(nn.Module):
    """A layer of no stock kind: y = x @ weight.T, weight (out, in) as torch keeps it."""
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n))

    def forward(self, x):
        return x @ self.weight.T


class FMat(nnx.Module):
    """Its port: y = x @ kernel, kernel (in, out) as Flax keeps it."""
    def __init__(self, n, *, rngs):
        self.kernel = nnx.Param(jnp.zeros((n, n)))

    def __call__(self, x):
        return x @ self.kernel


class TWithMat(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 4)
        self.mat = TMat(4)

    def forward(self, x):
        return self.mat(self.fc(x))


class FWithMat(nnx.Module):
    def __init__(self, *, rngs):
        self.fc = nnx.Linear(4, 4, rngs=rngs)
        self.mat = FMat(4, rngs=rngs)

    def __call__(self, x):
        return self.mat(self.fc(x))


class TScale(nn.Module):
    """A layer of no stock kind: y = x * gamma."""
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.arange(1.0, 5.0))

    def forward(self, x):
        return x * self.gamma


class FScale(nnx.Module):
    """Its port keeps gamma reversed: y = x * g[::-1]."""
    def __init__(self, *, rngs):
        self.g = nnx.Param(jnp.zeros(4))

    def __call__(self, x):
        return x * self.g[::-1]


class TWithScale(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 4)
        self.scale = TScale()

    def forward(self, x):
        return self.scale(self.fc(x))


class FWithScale(nnx.Module):
    def __init__(self, *, rngs):
        self.fc = nnx.Linear(4, 4, rngs=rngs)
        self.scale = FScale(rngs=rngs)

    def __call__(self, x):
        return self.scale(self.fc(x))


class TBN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.bn2 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn2(self.bn1(self.conv(x)))).mean((2, 3))))


class FBN(nnx.Module):
    """nnx.BatchNorm's own momentum (0.99, where torch's 0.1 means 0.9): wrong in training mode only."""
    def __init__(self, *, rngs, eps=1e-5, rate=0.1):
        self.conv = nnx.Conv(3, 4, (3, 3), padding=1, rngs=rngs)
        self.bn1 = nnx.BatchNorm(4, epsilon=eps, use_fast_variance=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(4, use_fast_variance=False, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)
        self.fc = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.fc(self.drop(jnp.maximum(self.bn2(self.bn1(self.conv(x))), 0).mean((1, 2))))
'''

KINDS = '''
from parity.porting import Array, Kind, register_kind

from models import FScale, TScale  # the model file, by its plain name: the very classes its models hold


def flip(a, tm=None, fm=None):
    return a[::-1]


register_kind(Kind("{name}", (TScale,), (FScale,), (Array("gamma", "g", {to_flax}, {to_torch}),)))
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def _run(argv, capsys, no_cache=True):
    """main(argv) → (exit code, stdout, the non-blank lines of stderr)."""
    capsys.readouterr()
    code = main(["compare", *argv] + (["--no-cache"] if no_cache else []))
    cap = capsys.readouterr()
    return code, cap.out, [ln for ln in cap.err.splitlines() if ln.strip()]


def _usage(argv, capsys, says, quiet=True):
    """Exit 2 with one line saying `says`, no traceback; `quiet`: refused before any work."""
    code, out, err = _run(argv, capsys)
    assert code == 2, (code, out, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert says in err[0], err[0]
    assert out == "" or not quiet, out
    return err[0]


def _pair(models, t, f, *rest):
    return [f"{models}:{t}", f"{models}:{f}", "--input-shape", "2,4", *rest]


# ---------------------------------------------------------------- --torch-kwargs, --flax-kwargs
def test_a_call_kwarg_is_needed_advised_and_taken(models, capsys):
    line = _usage(_pair(models, "TScaled", "FScaled"), capsys, "needs scale besides the 1 input(s) given", quiet=False)
    assert "--torch-kwargs JSON" in line and "torch_kwargs" not in line
    code, out, _ = _run(_pair(models, "TScaled", "FScaled", "--torch-kwargs", '{"scale": 2.5}',
                              "--flax-kwargs", '{"scale": 2.5}'), capsys)
    assert code == 0, out
    assert "torch: called with scale=2.5 besides the inputs" in out
    code, out, _ = _run(_pair(models, "TScaled", "FScaled", "--torch-kwargs", '{"scale": 2.5}',
                              "--flax-kwargs", '{"scale": 3.0}'), capsys)
    assert code == 1 and "DIFFERENT" in out  # the values reached the calls


def test_flax_rngs_spelled_as_a_seed_becomes_nnx_rngs(models, capsys):
    line = _usage(_pair(models, "T", "FNeedsRngs"), capsys, "needs `rngs`", quiet=False)
    assert """pass --flax-kwargs '{"rngs": 0}' (it becomes nnx.Rngs(0))""" in line
    code, out, _ = _run(_pair(models, "T", "FNeedsRngs", "--flax-kwargs", '{"rngs": 0}'), capsys)
    assert code == 0, out
    assert "flax: called with rngs=nnx.Rngs(0) besides the inputs" in out


def test_flax_rngs_spelled_as_streams(models, capsys):
    code, out, _ = _run(_pair(models, "T", "FNeedsDropoutStream", "--flax-kwargs",
                              '{"rngs": {"params": 0, "dropout": 1}}'), capsys)
    assert code == 0, out
    assert "rngs=nnx.Rngs(params=0, dropout=1)" in out
    code, out, err = _run(_pair(models, "T", "FNeedsDropoutStream", "--flax-kwargs", '{"rngs": 0}'), capsys)
    assert code == 2 and "no 'dropout' stream" in err[0]  # the model's own error, one line


def test_args_keeps_holding_constructor_arguments_and_takes_the_rngs_spelling(models, capsys):
    code, out, _ = _run(_pair(models, "T", "F", "--args", '{"torch": {}, "flax": {"rngs": 3}}'), capsys)
    assert code == 0, out
    assert "F(rngs=nnx.Rngs(3))" in out
    line = _usage(_pair(models, "T", "F", "--args", '{"torch": {}, "flax": {"rngs": "x"}}'), capsys,
                  "--args: the Flax side's \"rngs\" must be a seed")
    assert '"x"' in line


@pytest.mark.parametrize("value", [0, 2**63 - 1, 2**63, -1, True, 1.0, "0", None, {}, {"params": 0},
                                   {"params": 0, "dropout": 1}, {"": 0}, {"dropout": False}, [0]])
def test_the_up_front_rngs_check_agrees_with_the_loader(value):
    from parity.porting import load
    assert (compare_cmd._rngs_problem(value) is None) == load.is_rngs_spec(value)


@pytest.mark.parametrize("flag, value, says", [
    ("--torch-kwargs", "[1]", "--torch-kwargs: expected a JSON object {...}, got list"),
    ("--torch-kwargs", "{", "--torch-kwargs: not valid JSON"),
    ("--flax-kwargs", '{"scale": 1, "scale": 2}', '--flax-kwargs: key "scale" is given twice'),
    ("--torch-kwargs", '{"not a name": 1}', '--torch-kwargs: key "not a name" is not a Python keyword argument name'),
    ("--flax-kwargs", '{"rngs": -1}', '--flax-kwargs: "rngs" must be a seed, an integer in [0, 2**63)'),
    ("--flax-kwargs", '{"rngs": true}', '--flax-kwargs: "rngs" must be a seed'),
    ("--flax-kwargs", '{"rngs": {"dropout": 1.5}}', '--flax-kwargs: "rngs" must be a seed'),
    ("--flax-kwargs", '{"rngs": {}}', '--flax-kwargs: "rngs" must be a seed'),
])
def test_bad_call_kwargs_exit_2_before_any_work(models, capsys, flag, value, says):
    _usage(_pair(models, "T", "F", flag, value), capsys, says)


# ---------------------------------------------------------------- --map
def test_a_map_with_a_transposed_layout_makes_a_custom_layer_pass(models, capsys):
    line = _usage(_pair(models, "TWithMat", "FWithMat"), capsys, "has parameters but is of no kind", quiet=False)
    assert "in a file given to --kinds), or pass --map naming its parameters" in line and "weights=" not in line
    code, out, _ = _run(_pair(models, "TWithMat", "FWithMat", "--map", '{"mat.weight": ["mat.kernel", "T"]}'),
                        capsys)
    assert code == 0, out
    assert "layers paired by the given mapping" in out
    # the layout takes effect: kept as it is, the square weight converts without error and computes another map
    code, out, _ = _run(_pair(models, "TWithMat", "FWithMat", "--map", '{"mat.weight": ["mat.kernel", "same"]}'),
                        capsys)
    assert code == 1 and "DIFFERENT" in out


def test_a_map_may_be_a_file(models, tmp_path, capsys):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({"mat.weight": ["mat.kernel", "T"], "fc": "fc"}, indent=2))
    code, out, _ = _run(_pair(models, "TWithMat", "FWithMat", "--map", str(path)), capsys)
    assert code == 0, out


def test_a_map_reaches_the_training_comparison_too(models, capsys):
    code, out, _ = _run(_pair(models, "TWithMat", "FWithMat", "--map", '{"mat.weight": ["mat.kernel", "T"]}',
                              "--steps", "2"), capsys)
    assert code == 0, out
    assert "2 steps, float32" in out


@pytest.mark.parametrize("value, says", [
    ("{", "--map: not valid JSON"),
    ("[]", "--map: expected a JSON object {...}, got list"),
    ("{}", "--map: an empty object pairs nothing"),
    ('{"mat.weight": 3}', '--map: entry "mat.weight": expected a Flax path ("fc.kernel") or [Flax path, layout]'),
    ('{"mat.weight": ["mat.kernel", "X"]}', '--map: entry "mat.weight": layout "X" is none of T, conv, same'),
    ('{"mat.weight": ["mat.kernel"]}', '--map: entry "mat.weight": expected a Flax path'),
    ('{"mat.weight": ""}', '--map: entry "mat.weight": expected a Flax path'),
    ('{"": "mat.kernel"}', '--map: entry "": the torch layer or parameter name is empty'),
    ('{"fc": "fc", "fc": "mat"}', '--map: key "fc" is given twice'),
    ("no-such-file.json", "--map no-such-file.json: neither a JSON object nor a file that exists"),
])
def test_a_bad_map_exits_2_naming_the_flag_and_the_entry(models, capsys, value, says):
    _usage(_pair(models, "TWithMat", "FWithMat", "--map", value), capsys, says)


def test_a_bad_map_file_names_the_file(models, tmp_path, capsys):
    path = tmp_path / "names.json"
    path.write_text('{"mat.weight": ["mat.kernel", "t"]}')
    _usage(_pair(models, "TWithMat", "FWithMat", "--map", str(path)), capsys,
           f'--map {path}: entry "mat.weight": layout "t" is none of T, conv, same')


@pytest.mark.parametrize("value, says", [
    ('{"nope": "mat.kernel"}', "--map: torch model has no layer or parameter `nope`"),
    ('{"mat.weight": ["mat.nope", "T"]}', "--map: `mat.weight` → `mat.nope`: no Flax parameter at that path"),
])
def test_map_entries_the_models_lack_exit_2_naming_the_entry(models, capsys, value, says):
    _usage(_pair(models, "TWithMat", "FWithMat", "--map", value), capsys, says, quiet=False)


def test_map_with_steps_refuses_the_flax_to_torch_direction(models, capsys):
    _usage(_pair(models, "TWithMat", "FWithMat", "--map", '{"mat.weight": ["mat.kernel", "T"]}', "--steps", "1",
                 "--weights", "flax->torch"), capsys, "--map with --steps converts the weights torch->flax only")


def test_the_map_layouts_and_rules_are_the_comparers():
    from parity.porting import pairing, verdict
    assert set(compare_cmd.MAP_LAYOUTS) == set(pairing._LAYOUTS)
    assert set(compare_cmd.RULES) == set(verdict.RULES)


# ---------------------------------------------------------------- --kinds
def _kinds_file(tmp_path, name, flipped=True, body=None):
    path = tmp_path / f"kinds_{name}.py"
    how = "flip" if flipped else "lambda a, tm=None, fm=None: a"
    path.write_text(body if body is not None else KINDS.format(name=name, to_flax=how, to_torch=how))
    return path


def test_a_layer_of_unknown_kind_passes_once_kinds_registers_it(models, tmp_path, capsys):
    _usage(_pair(models, "TWithScale", "FWithScale"), capsys, "`scale` (TScale", quiet=False)
    path = _kinds_file(tmp_path, "scale_reach")
    code, out, _ = _run(_pair(models, "TWithScale", "FWithScale", "--kinds", str(path)), capsys)
    assert code == 0, out
    assert "registered scale_reach (TScale ⇄ FScale)" in out
    assert "scale (TScale)" in out and "scale_reach" in out  # a row of its own kind in the table
    assert "scale_reach" not in {k.name for k in kinds.all_kinds()}  # the run's registrations end with it
    code, out, _ = _run(_pair(models, "TWithScale", "FWithScale", "--kinds", str(path)), capsys)
    assert code == 0, out  # again in the same process: the file runs afresh


def test_the_kind_registered_is_the_conversion_that_runs(models, tmp_path, capsys):
    path = _kinds_file(tmp_path, "scale_unflipped", flipped=False)
    code, out, _ = _run(_pair(models, "TWithScale", "FWithScale", "--kinds", str(path)), capsys)
    assert code == 1 and "DIFFERENT — the output of torch `scale`" in out


@pytest.mark.parametrize("body, says", [
    ("x = 1\nraise RuntimeError('boom')\n", "importing it failed (line 2): RuntimeError: boom"),
    ("print('hello')\n", "printed to stdout at line 1 ('hello'); a kinds file may only define things"),
    ("import sys\nsys.exit(0)\n", "importing it called sys.exit(0) (line 2); a kinds file may only define things"),
    ("x = 1\n", "registered no kind; call parity.porting.register_kind(Kind(...)) in it"),
    ("from parity.porting import Kind, register_kind\nfrom torch import nn\nfrom flax import nnx\n"
     "register_kind(Kind('linear', (nn.Linear,), (nnx.Linear,)))\n",
     "importing it failed (line 4): ValueError: register: a kind named 'linear' exists already"),
])
def test_a_bad_kinds_file_exits_2_naming_it(models, tmp_path, capsys, body, says):
    path = _kinds_file(tmp_path, "bad", body=body)
    line = _usage(_pair(models, "T", "F", "--kinds", str(path)), capsys, says, quiet=False)
    assert line.startswith(f"parity: error: --kinds {path}:") or f"--kinds {path}: " in line
    assert "linear" in {k.name for k in kinds.all_kinds()}


def test_a_kinds_file_that_fails_while_comparing_exits_2_naming_it(models, tmp_path, capsys):
    body = "def broken(a, tm=None, fm=None):\n    raise KeyError('no such array')\n" + \
        KINDS.format(name="scale_broken", to_flax="broken", to_torch="flip")
    path = _kinds_file(tmp_path, "broken", body=body)
    _usage(_pair(models, "TWithScale", "FWithScale", "--kinds", str(path)), capsys,
           f"--kinds {path}: its broken() failed (line 2) while comparing: KeyError: 'no such array'", quiet=False)


@pytest.mark.parametrize("name, says", [("missing.py", "no such file"), ("kinds.txt", "expected a Python file (.py)")])
def test_a_kinds_path_that_is_no_python_file_is_refused_before_any_work(models, tmp_path, capsys, name, says):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("")
    _usage(_pair(models, "T", "F", "--kinds", str(tmp_path / name)), capsys, f"--kinds {tmp_path / name}: {says}")


# ---------------------------------------------------------------- --rule
def test_the_rule_is_the_dtypes_default_or_the_one_asked_and_says_so(models, tmp_path, capsys):
    path = tmp_path / "r.json"
    code, out, _ = _run(_pair(models, "T", "F", "--dtype", "float32", "float64", "--json", str(path)), capsys)
    assert code == 0
    assert [r["rule"] for r in json.loads(path.read_text())["compare"]] == ["scaled", "fixed"]
    assert "no worse than 8× torch float32's own error" in out and "rtol 1e-07 atol 1e-07" in out
    code, out, _ = _run(_pair(models, "T", "F", "--rule", "fixed", "--json", str(path)), capsys)
    assert code == 0
    assert json.loads(path.read_text())["compare"][0]["rule"] == "fixed"
    assert "float32 on cpu, eval mode, precision strict, rtol" in out and "no worse than" not in out


def test_the_scaled_rule_is_refused_for_float64_before_any_work(models, capsys):
    _usage(_pair(models, "T", "F", "--rule", "scaled", "--dtype", "float32", "float64"), capsys,
           "--rule scaled judges float32 against a float64 run of the torch model; --dtype float32 float64 includes "
           "float64")


def test_help_names_the_rules_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "scaled (the default in float32)" in text and "fixed (the default, and the only rule, in float64)" in text
    for flag in ("--torch-kwargs", "--flax-kwargs", "--map", "--kinds", "--rule", "--no-cache"):
        assert flag in text


# ---------------------------------------------------------------- notes
def _bn(models, *rest):
    return [f"{models}:TBN", f"{models}:FBN", "--input-shape", "2,3,6,6", *rest]


def _notes(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("note: ")]


def test_batchnorm_in_eval_mode_has_no_training_notes_and_no_note_twice(models, capsys):
    code, out, _ = _run(_bn(models, "--dtype", "float32", "float64", "--steps", "1",
                            "--args", '{"torch": {}, "flax": {"rate": 0.3}}'), capsys)
    assert code == 0, out
    assert "momentum" not in out and "running var" not in out  # they bear on training-mode passes only
    assert "dropout probability" not in out  # eval-mode Dropout is the identity, whatever its rate
    notes = _notes(out)
    assert notes and len(notes) == len(set(notes)), notes
    assert sum("eval mode (the default)" in n for n in notes) == 1


def test_in_training_mode_a_divergence_lists_only_the_settings_that_bear_on_it(models, capsys):
    argv = _bn(models, "--train", "--args", '{"torch": {}, "flax": {"eps": 0.001}}')
    code, out, _ = _run(argv, capsys)
    assert code == 1
    summary = next(ln for ln in out.splitlines() if "DIFFERENT —" in ln)
    assert "the output of torch `bn1`" in summary
    assert "settings that differ: eps: torch 1e-05, Flax 0.001" in summary
    assert "momentum" not in summary  # it moves the running statistics, not the output that differs
    notes = _notes(out)
    # the momentum note is said once for both BatchNorms; the eps note only in the summary
    both = [n for n in notes if "momentum: torch 0.1" in n]
    assert len(both) == 1 and "torch `bn1` ⇄ Flax `bn1`, torch `bn2` ⇄ Flax `bn2`: " in both[0], notes
    assert not any("eps: torch 1e-05" in n for n in notes)
    assert "dropout probability: torch 0.1, Flax 0.1" not in out


def test_a_running_statistics_divergence_lists_no_eps(models, capsys):
    argv = _bn(models, "--train", "--rule", "fixed", "--dtype", "float64",
               "--args", '{"torch": {}, "flax": {"eps": 1.00001e-5}}')
    code, out, _ = _run(argv, capsys)
    assert code == 1
    summary = next(ln for ln in out.splitlines() if "DIFFERENT —" in ln)
    assert "the running statistics of torch `bn1`" in summary and "momentum: torch 0.1" in summary
    assert "eps:" not in summary  # eps changes the normalised output, never the statistics


def test_dropout_settings_are_noted_in_training_mode(models, capsys):
    argv = _bn(models, "--train", "--args", '{"torch": {}, "flax": {"rate": 0.3}}')
    code, out, _ = _run(argv, capsys)
    assert code == 1 and "dropout probability: torch 0.1, Flax 0.3" in out


def test_a_second_dtype_and_training_repeat_no_note(capsys):
    from pathlib import Path
    ex = Path(__file__).resolve().parents[1] / "examples"
    code, out, _ = _run([f"{ex}/small_cnn.py:torch_model", f"{ex}/small_cnn.py:flax_model", "--input-shape",
                         "8,1,8,8", "--dtype", "float32", "float64", "--steps", "1"], capsys)
    assert code == 0
    notes = _notes(out)
    assert len(notes) == len(set(notes)), notes
    assert sum("reads a flattened map" in n for n in notes) == 1


# ---------------------------------------------------------------- the spelling of advice, cache, threads
def test_every_pairing_spelling_the_cli_rewrites_is_one_the_comparer_writes(models):
    import numpy as np

    from parity.porting import PortingError, compare
    from parity.porting.load import load_module
    m = load_module(str(models))
    with pytest.raises(PortingError) as e:
        compare(m.TWithMat(), m.FWithMat(rngs=__import__("flax").nnx.Rngs(0)), np.ones((2, 4), np.float32))
    for python, cli in compare_cmd.PAIRING_SPELLING.items():
        assert python in str(e.value)
        assert python not in compare_cmd.cli_spelling(str(e.value)) and cli in compare_cmd.cli_spelling(str(e.value))


def test_the_compilation_cache_is_used_for_the_run_only(models, tmp_path, capsys):
    before = jax.config.jax_compilation_cache_dir
    cache = tmp_path / "cache"
    code, out, _ = _run(_pair(models, "T", "F", "--cache-dir", str(cache)), capsys, no_cache=False)
    assert code == 0, out
    assert cache.is_dir() and any(cache.iterdir())  # the programs were written there
    assert jax.config.jax_compilation_cache_dir == before
    code, out, _ = _run(_pair(models, "T", "F", "--cache-dir", str(cache)), capsys, no_cache=False)
    assert code == 0, out  # and read back


def test_a_cache_dir_that_is_a_file_is_refused(models, tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("")
    code, out, err = _run(_pair(models, "T", "F", "--cache-dir", str(path)), capsys, no_cache=False)
    assert code == 2 and len(err) == 1 and f"--cache-dir {path}: is a file, expected a folder" in err[0]


def test_torch_keeps_its_thread_count_after_the_run(models, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, out, _ = _run(_pair(models, "T", "F"), capsys)
        assert code == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
