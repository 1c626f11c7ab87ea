"""Search checkpoints and the keys that say when a stored search answer still holds.

A checkpoint records each finished task (layout class x part) of one search: its candidates
(unverified: the driver verifies whatever it keeps) and its counters. It is valid for exactly one
(program, task settings, code fingerprint). ``read`` refuses anything else with a
``CheckpointError`` naming the file and what is wrong; a checkpoint of other code
(``StaleCheckpoint``) is the one case a caller may silently start over from, keeping a backup.

The code fingerprint hashes the source of every package whose code decides what a search finds
or whether a candidate is correct, so no hand-bumped version string can forget a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from mirage.errors import InputError
from mirage.fingerprint import source_fingerprint
from mirage.ir import KernelGraph, MugraphFormatError, Target
from mirage.ir.serialize import graph_from_dict

FORMAT = "mirage-search-checkpoint"
VERSION = 2
# The packages whose code decides correctness and the search's answer (DESIGN.md section 2).
FINGERPRINTED = ("ops", "ir", "semantics", "verify", "expr", "search")
# Settings that change what a task finds. The time budget and the workers do not (a task is
# recorded only when finished), nor do ``keep`` and ``verify_candidates`` (they choose among the
# recorded candidates after the search), so a resume with new values of those just continues.
TASK_SETTINGS = ("max_kernel_ops", "max_block_ops", "max_customized", "use_pruning",
                 "allow_split", "target", "grid_hint")


class CheckpointError(InputError):
    """A checkpoint file that cannot be resumed from: damaged, foreign, or of other settings."""


class StaleCheckpoint(CheckpointError):
    """A checkpoint written by other code (another fingerprint or an older format)."""


def code_fingerprint() -> str:
    """The fingerprint (``mirage.fingerprint``) of the packages in ``FINGERPRINTED``."""
    return source_fingerprint(*FINGERPRINTED)


def task_settings(config) -> dict:
    """The settings of ``config`` a checkpoint must share to be resumed (JSON values)."""
    fields = dataclasses.asdict(config)
    return {k: list(fields[k]) if isinstance(fields[k], tuple) else fields[k]
            for k in TASK_SETTINGS}


def cache_key(program: KernelGraph, config) -> str:
    """The key of a search's answer: program, every setting that changes the answer (all but
    the workers and the time budget: only finished searches are cached), code fingerprint."""
    fields = config.key_fields()
    fields.pop("time_budget_s", None)
    text = json.dumps([program.digest, fields, code_fingerprint()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def backup(path: Path) -> Path:
    """Move ``path`` aside to ``<path>.bak`` (replacing an older backup); returns the backup."""
    bak = path.with_name(path.name + ".bak")
    try:
        os.replace(path, bak)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot move the old checkpoint aside to {bak}: "
                              f"{e.strerror or e}") from None
    return bak


def dumps(program: KernelGraph, config, done: dict) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "code": code_fingerprint(),
                       "program": program.digest, "settings": task_settings(config),
                       "key": cache_key(program, config), "done": done})


def read(path: Path, program: KernelGraph, config, target: Target, tasks: set[str]
         ) -> tuple[dict, dict]:
    """(done, found) of the checkpoint at ``path``: the finished tasks as stored, and each
    one's candidate graphs. A missing file is an empty checkpoint; anything else that is not a
    checkpoint of this program, these settings and this code raises ``CheckpointError``."""
    if not path.exists():
        return {}, {}
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint (not valid JSON: "
                              f"{str(e)[:80]})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: not a search checkpoint (a JSON "
                              f"{type(doc).__name__}, not an object)")
    if "format" not in doc and set(doc) == {"key", "done"}:
        raise StaleCheckpoint(f"{path}: checkpoint of an older version of the search")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a search checkpoint (format is "
                              f"{str(doc.get('format'))[:40]!r}, not {FORMAT!r})")
    if doc.get("version") != VERSION or doc.get("code") != code_fingerprint():
        raise StaleCheckpoint(f"{path}: checkpoint of other code (fingerprint "
                              f"{str(doc.get('code'))[:24]} -> {code_fingerprint()})")
    if doc.get("program") != program.digest:
        raise CheckpointError(f"{path}: checkpoint of another program (digest "
                              f"{str(doc.get('program'))[:12]}, this program "
                              f"{program.digest[:12]})")
    settings = doc.get("settings")
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: damaged checkpoint: 'settings' is not an object")
    now = task_settings(config)
    changed = [f"{k} {settings.get(k, '<missing>')!r} -> {now[k]!r}" for k in TASK_SETTINGS
               if settings.get(k, "<missing>") != now[k]]
    if changed:
        raise CheckpointError(f"{path}: checkpoint of other settings: {', '.join(changed)} "
                              f"(use the old settings, or --restart to start over)")
    return _done(path, doc.get("done"), target, tasks)


def _done(path: Path, done, target: Target, tasks: set[str]) -> tuple[dict, dict]:
    def bad(where: str, what: str):
        raise CheckpointError(f"{path}: damaged checkpoint: {where}: {what}")

    if not isinstance(done, dict):
        bad("done", "not an object")
    found = {}
    for task, entry in done.items():
        where = f"done[{task[:20]!r}]"
        if task not in tasks:
            bad(where, "not a task of this search")
        if not isinstance(entry, dict) or not isinstance(entry.get("graphs"), list):
            bad(where, "no list 'graphs'")
        stats = entry.get("stats")
        if not (isinstance(stats, dict) and _count(stats.get("explored"))
                and isinstance(stats.get("rejected"), dict)
                and all(isinstance(k, str) and _count(v)
                        for k, v in stats["rejected"].items())):
            bad(f"{where}.stats", "not {'explored': count, 'rejected': {filter: count}}")
        graphs = []
        for i, d in enumerate(entry["graphs"]):
            try:
                graphs.append(graph_from_dict(d, target, str(path)))
            except MugraphFormatError as e:
                bad(f"{where}.graphs[{i}]", f"{e.field}: {e.message}")
            except RecursionError:
                bad(f"{where}.graphs[{i}]", "nested too deeply")
        found[task] = graphs
    return done, found


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
