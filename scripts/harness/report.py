"""The text report of a run: a table of medians and speedups, then what did not run and why,
Mirage's choices, and the upstream quirks we did not copy. Reads records; measures nothing."""

from __future__ import annotations

from scripts.harness import records as rec
from scripts.harness.analysis import MIRAGE, grouped, speedups
from scripts.harness.cases import UPSTREAM_QUIRKS
from scripts.harness.records import Record

SHORT = {rec.NOT_AVAILABLE: "n/a", rec.WRONG: "WRONG", rec.ERROR: "error"}


def implementations(records: list[Record]) -> list[str]:
    """Implementations in first-measured order, Mirage last, without those never available."""
    names: list[str] = []
    for r in records:
        if r.implementation not in names and r.implementation != MIRAGE:
            names.append(r.implementation)
    shown = [n for n in names
             if any(r.implementation == n and r.status != rec.NOT_AVAILABLE for r in records)]
    return shown + [MIRAGE]


def _cell(r: Record | None) -> str:
    if r is None:
        return ""
    return f"{r.median_us:.1f}" if r.ok else SHORT[r.status]


def speedup_text(s) -> str:
    if s.speedup is not None:
        return f"{s.speedup:.2f}x"
    if s.mirage_status == rec.OK:
        return "no baseline"
    return s.mirage_status


def table(meta: dict, records: list[Record]) -> str:
    from tabulate import tabulate  # here: a machine without it still publishes its records

    names = implementations(records)
    rows = []
    ups = speedups(records)
    for (case, b), group in grouped(records).items():
        by_name = {r.implementation: r for r in group}
        s = ups[(case, b)]
        rows.append([case, b, *[_cell(by_name.get(n)) for n in names],
                     s.best_baseline or "-", speedup_text(s)])
    gpu = meta.get("gpu_info", {}).get("name", meta.get("gpu", "?"))
    methods = sorted({r.method for r in records if r.method})
    lines = [
        f"Figure 7 reproduction on {gpu} (results/{meta.get('gpu')}), run {meta.get('run_id')}",
        f"commit {meta.get('commit')}, started {meta.get('started')}",
        f"timing: {', '.join(methods) or '-'}; cells are median microseconds per call;",
        "speedup = best correct baseline / Mirage. n/a: not available here; WRONG: failed the "
        "check against the fp32 reference (never timed).",
    ]
    override = meta.get("gpu_override")
    if override:
        lines.append(f"NOTE: filed as {override['requested']} by override; NVML reported "
                     f"{override['reported_name']}.")
    lines += ["", tabulate(rows, headers=["case", "b", *names, "best baseline", "speedup"],
                           tablefmt="github", disable_numparse=True)]
    lines += _section("Not available", _not_available(records))
    lines += _section("Wrong or failed", [
        f"{r.case} b={r.batch} {r.implementation}: {r.status}: {r.error}"
        for r in records if r.status in (rec.WRONG, rec.ERROR)])
    lines += _section("Mirage candidates", [
        f"{r.case} b={r.batch}: {_mirage_detail(r)}" for r in records
        if r.implementation == MIRAGE and r.status != rec.NOT_AVAILABLE])
    lines += _section("Upstream quirks not copied", list(UPSTREAM_QUIRKS))
    return "\n".join(lines) + "\n"


def _section(title: str, items: list[str]) -> list[str]:
    return ["", f"{title}:", *[f"  - {x}" for x in items]] if items else []


def _not_available(records: list[Record]) -> list[str]:
    reasons: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r.status == rec.NOT_AVAILABLE:
            reasons.setdefault((r.implementation, r.error or ""), []).append(
                f"{r.case}/b{r.batch}")
    return [f"{impl}: {reason} ({len(where)} case{'s' if len(where) > 1 else ''})"
            for (impl, reason), where in reasons.items()]


def _mirage_detail(r: Record) -> str:
    d = r.detail
    if "index" not in d:
        return r.describe()
    return (f"candidate #{d['index']} of {d.get('candidates')} "
            f"({d.get('wrong', 0)} wrong, {d.get('failed', 0)} failed"
            f"{', cached choice' if d.get('cached') else ''})")
