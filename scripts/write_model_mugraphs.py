"""Write the µGraphs of the Figure 11 models' fusable pieces to ``saved_mugraphs/models/``.

    python -m scripts.write_model_mugraphs [--models llama3-8b,...] [--batches 1,8,16] [--full]

For every model, batch size and piece (``models.pieces.piece_kinds``), the kind's input program and
µGraph are built at the model's shapes (``mirage.workloads.models``), checked against the H100 and
A100 limits, and verified (``mirage.verify.verify``: finite-field trials and a float check)
against the program. The verifier's cost grows with the shapes (the attention at b = 16 would take
minutes), so by default it runs on the same builders at the model's tiny twin
(``models.configs.tiny``: same structure and batch, hidden 64, KV 32); ``--full`` verifies at the
real shapes as well. Each file holds the program, the candidates and, in ``meta``, the command,
the shapes and what was verified where. Until the search (``mirage/search``) is ready these are the
hand-written forms; the search will write the same files with more candidates.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from mirage.ir import A100, H100, check, save
from mirage.verify import verify
from mirage.workloads.models import KINDS, build
from models.configs import ModelConfig, select, tiny
from models.pieces import piece_kinds, piece_shapes, saved_path

BATCHES = (1, 8, 16)


def write_piece(cfg: ModelConfig, piece: str, b: int, out: Path, command: str,
                full: bool = False) -> tuple[bool, str]:
    """Build, check, verify and save one file; (ok, one-line summary)."""
    kind = piece_kinds(cfg)[piece]
    shapes = piece_shapes(cfg, b)[piece]
    program, graphs = build(kind, shapes)
    for g in graphs:
        for target in (H100, A100):
            broken = check(g, target)
            if broken:
                return False, f"invalid on {target.name}: {broken[0]}"
    twin = piece_shapes(tiny(cfg), b)[piece]
    small_program, small_graphs = build(kind, twin)
    verdicts = [verify(small_program, g) for g in small_graphs]
    where = {"shapes": {k: list(v) for k, v in twin.items()}, "config": tiny(cfg).name}
    if full:
        verdicts += [verify(program, g) for g in graphs]
        where = {"shapes": "the model's own, and " + tiny(cfg).name}
    bad = next((v for v in verdicts if not v), None)
    if bad is not None:
        return False, f"not verified: {bad.reason}"
    meta = {
        "model": cfg.name, "piece": piece, "kind": kind, "batch": b,
        "program": KINDS[kind].description,
        "shapes": {k: list(v) for k, v in shapes.items()},
        "origin": "hand-written µGraph (mirage.workloads.models), tiles derived from the shapes",
        "command": command,
        "created": datetime.date.today().isoformat(),
        "verified": verdicts[0].reason, "verified_at": where,
        "false_pass_bound": max(v.bound for v in verdicts),
        "valid_on": ["h100", "a100"],
    }
    path = saved_path(out, cfg, piece, b)
    save(path, graphs, program=program, meta=meta)
    grids = "; ".join(f"grid {n.block.grid} loop {n.block.forloop_range}"
                      for g in graphs for n in g.nodes if n.block is not None)
    return True, f"{path}: {verdicts[0].reason}; {grids}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma list (default: all four)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--out", type=Path, default=Path("saved_mugraphs"))
    parser.add_argument("--full", action="store_true",
                        help="also verify at the models' real shapes (slow: many minutes)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m scripts.write_model_mugraphs", *argv])
    try:
        models = select(args.models)
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError as e:
        print(f"write_model_mugraphs: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()
    failed = 0
    for cfg in models:
        for b in batches:
            for piece in piece_kinds(cfg):
                ok, summary = write_piece(cfg, piece, b, args.out, command, args.full)
                print(f"{cfg.name} b={b} {piece}: {summary}", flush=True)
                failed += not ok
    print(f"done in {time.monotonic() - start:.0f} s; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
