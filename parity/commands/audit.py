"""`parity audit`: parity in both precision modes, cross-device agreement and determinism."""
from __future__ import annotations

from parity.commands.common import add_concept_names, check_device, select_concepts
from parity.console import EXIT_FAIL, EXIT_OK, esc, progress, write_json_atomic, write_text_atomic, writable_dir
from parity.names import DEVICES


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="parity in both precision modes, cross-device and determinism report")
    add_concept_names(p)
    p.add_argument("--device", choices=DEVICES, default=None,
                   help="default: cuda where both JAX and PyTorch see a CUDA GPU, else cpu (the cross-device "
                        "part needs cuda; on the cpu the audit checks parity and determinism)")
    p.add_argument("--deterministic", action="store_true",
                   help="turn on XLA's deterministic ops and torch.use_deterministic_algorithms")
    p.add_argument("--out", metavar="DIR", default="parity/reports",
                   help="writes audit-<device>[-deterministic].json and .md here (default: %(default)s)")
    p.set_defaults(run=run)


def run(args, out, err) -> int:
    from parity import audit, precision
    concepts = select_concepts(args.names)
    if args.device is None:  # not given: the GPU where there is one (known only once the frameworks load)
        args.device = "cuda" if precision.cuda_available() else "cpu"
    check_device(args.device)
    folder = writable_dir(args.out, "--out")
    if args.deterministic:
        precision.deterministic()
    with progress(err) as prog:
        task = prog.add_task("auditing", total=len(concepts))
        a = audit.run_audit(concepts, args.device, progress=lambda c: prog.advance(task))
    stem = folder / f"audit-{args.device}{'-deterministic' if args.deterministic else ''}"
    write_json_atomic(a, stem.with_suffix(".json"))
    md = audit.markdown(a)
    write_text_atomic(md, stem.with_suffix(".md"))
    out.print(md, markup=False, highlight=False)
    out.print(f"wrote {esc(stem)}.json and {esc(stem)}.md", highlight=False)
    ok = all(r["passed"] for r in a["parity"] if r["precision"] == "strict")
    return EXIT_OK if ok else EXIT_FAIL
