"""Contradictions inside a published run: what ``make verify`` and ``--adopt`` refuse to use.

``load_run`` proves a run is whole (its digest, its id, its GPU) and each record well typed;
``problems`` then asks whether the records can be true together with the run's metadata and the
case table. A record that says ``ok`` with a relative error above its case's tolerance, a median
outside its samples, fewer samples than its timing method or its run asked for, an unknown method,
a case or batch size the case table or the run's plan does not hold, or a GPU other than the
run's: each is named by file line, record and field. One contradiction makes the whole run
untrusted (``check_run`` raises ``ResultsError``), so no speedup is ever computed from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scripts.harness import records as rec
from scripts.harness.analysis import MIRAGE
from scripts.harness.cases import CASES
from scripts.harness.records import Record, ResultsError

FIG7, FIG11 = "fig7", "fig11"
_REL = 1e-9  # float slack when comparing a median with the samples it was computed from


@dataclass(frozen=True)
class Method:
    """A timing method's name and the fewest samples a median of it may come from."""

    name: str
    min_samples: int
    cpu_only: bool = False  # the CPU tests' fake timer: never a GPU run's


def _methods() -> dict[str, Method]:
    try:
        from mirage.profile.timing import METHOD
    except Exception:  # the checker must work where mirage.profile does not import
        METHOD = "cudagraph-events-rotated"
    return {m.name: m for m in (Method(METHOD, 5), Method("fake", 1, cpu_only=True))}


METHODS = _methods()


def _label(i: int, r: Record) -> str:
    return f"records.jsonl:{i} ({r.case} b={r.batch} {r.implementation})"


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _table(meta: dict, figure: str) -> tuple[dict, list[str]]:
    """(case -> (tolerance, implementations)) for ``figure``, and problems of the metadata."""
    plan = meta.get("plan") if isinstance(meta.get("plan"), dict) else {}
    if figure == FIG11:
        from scripts.harness.endtoend_report import (
            IMPLEMENTATIONS,
            LAYER,
            LAYER_TOLERANCE,
            STEP_TOLERANCE,
        )

        models = plan.get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            return {}, ["metadata.json: field plan.models missing or not a list of names"]
        table = {}
        for m in models:
            table[m] = (STEP_TOLERANCE, IMPLEMENTATIONS)
            table[m + LAYER] = (LAYER_TOLERANCE, IMPLEMENTATIONS)
        return table, []
    table = {name: (c.tolerance, (*c.baselines, MIRAGE)) for name, c in CASES.items()}
    cases = plan.get("cases")
    if isinstance(cases, list):
        table = {k: v for k, v in table.items() if k in cases}
    return table, []


def _meta_problems(meta: dict, figure: str) -> list[str]:
    out = []
    method = meta.get("method")
    if method not in METHODS:
        out.append(f"metadata.json: field method: unknown timing method {method!r} "
                   f"(known: {', '.join(METHODS)})")
    elif METHODS[method].cpu_only and _settings(meta).get("device") != "cpu":
        out.append(f"metadata.json: field method: {method!r} times CPU test runs only")
    batches = (meta.get("plan") or {}).get("batches") if isinstance(meta.get("plan"), dict) \
        else None
    if batches is not None and (not isinstance(batches, list)
                                or not all(_positive(b) and isinstance(b, int) for b in batches)):
        out.append(f"metadata.json: field plan.batches: {batches!r} is not a list of positive "
                   "integers")
    samples = _settings(meta).get("samples")
    if samples is not None and not (isinstance(samples, int) and _positive(samples)):
        out.append(f"metadata.json: field settings.samples: {samples!r} is not a positive "
                   "integer")
    override = meta.get("gpu_override")
    name = (meta.get("gpu_info") or {}).get("name") if isinstance(meta.get("gpu_info"),
                                                                  dict) else None
    if isinstance(name, str) and not override:
        from scripts.harness.metadata import gpu_slug

        if gpu_slug(name) != meta.get("gpu"):
            out.append(f"metadata.json: field gpu: {meta.get('gpu')!r} but gpu_info.name is "
                       f"{name!r} ({gpu_slug(name)}) and no override is recorded")
    return out


def _settings(meta: dict) -> dict:
    s = meta.get("settings")
    return s if isinstance(s, dict) else {}


def record_problems(i: int, r: Record, meta: dict, table: dict) -> list[str]:
    """What record ``i`` (its line in records.jsonl) contradicts; empty if nothing."""
    at, out = _label(i, r), []
    plan = meta.get("plan") if isinstance(meta.get("plan"), dict) else {}
    if r.gpu != meta.get("gpu"):
        out.append(f"{at}: field gpu: {r.gpu!r} but the run's metadata says {meta.get('gpu')!r}")
    if r.case not in table:
        out.append(f"{at}: field case: {r.case!r} is not in the case table of this run "
                   f"(known: {', '.join(table) or 'none'})")
        return out
    tolerance, implementations = table[r.case]
    if r.batch < 1 or (isinstance(plan.get("batches"), list) and r.batch not in plan["batches"]):
        out.append(f"{at}: field batch: {r.batch} is not a batch size of this run "
                   f"(planned: {plan.get('batches')})")
    if r.implementation not in implementations:
        out.append(f"{at}: field implementation: {r.implementation!r} does not apply to "
                   f"{r.case}")
    if r.tolerance is not None and not (0 <= r.tolerance <= tolerance):
        out.append(f"{at}: field tolerance: {r.tolerance} is not the case's {tolerance:g}")
    if r.status == rec.WRONG and r.correct is True:
        out.append(f"{at}: field correct: true on a record of status wrong")
    if r.status != rec.OK:
        if r.samples_us:
            out.append(f"{at}: field samples_us: {len(r.samples_us)} samples on an untimed "
                       f"record (status {r.status})")
        return out
    return out + _timing_problems(at, r, meta, tolerance)


def _timing_problems(at: str, r: Record, meta: dict, tolerance: float) -> list[str]:
    out = []
    if r.rel_err is None:
        out.append(f"{at}: field rel_err: missing on an ok record (its check left no error)")
    elif not (0 <= r.rel_err <= tolerance):
        out.append(f"{at}: field rel_err: {r.rel_err:g} above the case's tolerance "
                   f"{tolerance:g}, yet status ok")
    method = METHODS.get(r.method or "")
    if method is None:
        out.append(f"{at}: field method: unknown timing method {r.method!r} "
                   f"(known: {', '.join(METHODS)})")
    elif r.method != meta.get("method"):
        out.append(f"{at}: field method: {r.method!r} but the run used {meta.get('method')!r}")
    if not _positive(r.median_us):
        out.append(f"{at}: field median_us: {r.median_us!r} is not a positive time")
    bad = [x for x in r.samples_us if not _positive(x)]
    if bad:
        out.append(f"{at}: field samples_us: {bad[0]!r} is not a positive time")
    asked = _settings(meta).get("samples")
    asked = asked if isinstance(asked, int) and not isinstance(asked, bool) else 1
    needed = max(method.min_samples if method else 1, asked)
    if len(r.samples_us) < needed:
        out.append(f"{at}: field samples_us: {len(r.samples_us)} samples, fewer than the "
                   f"{needed} its method and run require")
    if r.samples_us and not bad and _positive(r.median_us):
        lo, hi = min(r.samples_us), max(r.samples_us)
        slack = _REL * hi
        if not (lo - slack <= r.median_us <= hi + slack):
            out.append(f"{at}: field median_us: {r.median_us:g} outside its samples "
                       f"[{lo:g}, {hi:g}]")
    if r.warm_median_us is not None and not _positive(r.warm_median_us):
        out.append(f"{at}: field warm_median_us: {r.warm_median_us!r} is not a positive time")
    if r.calls_per_sample is not None and r.calls_per_sample < 1:
        out.append(f"{at}: field calls_per_sample: {r.calls_per_sample} is not positive")
    return out


def problems(meta: dict, records: list[Record], figure: str = FIG7) -> list[str]:
    """Every contradiction of the run (metadata and records), each naming its place."""
    table, out = _table(meta, figure)
    out += _meta_problems(meta, figure)
    seen: dict[tuple, int] = {}
    for i, r in enumerate(records, 1):
        key = (r.case, r.batch, r.implementation)
        if key in seen:
            out.append(f"{_label(i, r)}: a second record for it (first: line {seen[key]})")
        seen.setdefault(key, i)
        out += record_problems(i, r, meta, table)
    return out


def check_run(directory, meta: dict, records: list[Record], figure: str = FIG7) -> None:
    """``ResultsError`` naming the first contradictions of the run in ``directory``."""
    found = problems(meta, records, figure)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise ResultsError(f"{directory}: contradictory records: " + "; ".join(found[:3])
                           + more)
