"""The search cache: a finished search's verified candidates, trusted only after a re-check.

An entry is a µGraph file named by ``cache_key`` (program, settings, code fingerprint). A file
on disk can be damaged, edited or left by other code, so before its candidates are returned as
verified each one is checked again: the file must load (which applies every validity rule of the
target), hold the same program, carry this code's fingerprint, and every candidate must pass one
more finite-field trial (``RECHECK``: validity and signature too, no float check) with a seed of
its own, independent of the trials that accepted it (no certificate is asked of that one trial:
the entry was certified when it was written). A full ``verify`` would be too slow for a
cache: on the paper's workloads at full size one finite-field trial of a candidate takes 0.1 to 7
s on a CPU and a full verification three or more trials plus a float check (up to ~25 s per
candidate, minutes for eight), while one trial catches any damage that changes what a graph
computes with probability at least 1 - eps, eps the one-trial bound of Theorem 3 (below 1e-3 on
the paper's workloads). An entry failing any check is searched again, with one warning line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from mirage.ir import TARGETS, KernelGraph, MugraphFormatError, load, save
from mirage.search.checkpoint import CheckpointError, cache_key, code_fingerprint
from mirage.search.engine import Report, SearchConfig, SearchResult, answer, search
from mirage.verify import VerifyConfig, verify

# A re-check looks for damage, not for a certificate: the entry's candidates were certified
# when it was written, by this same code (the key holds its fingerprint), so one passing trial
# is accepted whatever bound it alone carries.
RECHECK = VerifyConfig(min_trials=1, max_trials=1, float_check=False, certify_bound=1.0)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MIRAGE_CACHE", Path.home() / ".cache" / "mirage")) / "search"


def _recheck(path: Path, program: KernelGraph, search_config: SearchConfig
             ) -> tuple[SearchResult | None, str]:
    """(the cached result, "") if the entry at ``path`` passes every check, else (None, why)."""
    target = TARGETS[search_config.target]
    try:
        doc = load(path, target)
    except MugraphFormatError as e:
        return None, f"{e.field or 'file'}: {e.message}"
    if doc.program is None or doc.program.digest != program.digest:
        return None, "it holds another program"
    if doc.meta.get("code") != code_fingerprint():
        return None, "it was written by other code"
    config = dataclasses.replace(RECHECK, seed=int(path.stem[:12], 16) + 1)
    for i, g in enumerate(doc.graphs):
        verdict = verify(program, g, config, target=target)
        if not verdict:
            return None, f"graph {i} no longer verifies: {verdict.reason}"
    report = Report(stop_reason="cached", verified=len(doc.graphs),
                    candidates=len(doc.graphs))
    return answer(program, list(doc.graphs), report, target), ""


def search_cached(program: KernelGraph, config: SearchConfig | None = None,
                  cache_dir: str | Path | None = None) -> SearchResult:
    """``search`` with its verified candidates cached by ``cache_key(program, config)``; a
    cached entry is re-checked (module docstring) before it is returned."""
    config = config or SearchConfig()
    config.check()
    path = Path(cache_dir or default_cache_dir()) / f"{cache_key(program, config)}.json"
    if path.exists():
        cached, why = _recheck(path, program, config)
        if cached is not None:
            return cached
        print(f"warning: search cache entry {path} not trusted ({why}): searching again",
              file=sys.stderr)
    checkpoint = path.with_suffix(".ckpt")
    try:
        result = search(program, config, checkpoint=checkpoint)
    except CheckpointError as e:
        # The cache's own checkpoint: damaged means start over (it is kept as .bak), not stop.
        print(f"warning: {e}: starting over", file=sys.stderr)
        result = search(program, config, checkpoint=checkpoint, restart=True)
    if result.report.stop_reason == "exhausted" and config.verify_candidates:
        save(path, result.searched, program=program,
             meta={"code": code_fingerprint(), "config": config.key_fields(),
                   "report": result.report.lines()})
    return result
