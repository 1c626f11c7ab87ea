"""Speedups from records: Mirage against the best correct baseline, per (case, batch).

Only ``ok`` records count (checked correct, then timed): a wrong implementation is never a
baseline to beat and a wrong Mirage never has a speedup.
"""

from __future__ import annotations

from dataclasses import dataclass

from scripts.harness.cases import CASES
from scripts.harness.records import Record

MIRAGE = "mirage"
MISSING = "missing"  # no record at all


@dataclass(frozen=True)
class Speedup:
    case: str
    batch: int
    best_baseline: str | None
    best_baseline_us: float | None
    mirage_status: str  # a record status, or "missing"
    mirage_us: float | None

    @property
    def speedup(self) -> float | None:
        if self.mirage_us is None or self.best_baseline_us is None:
            return None
        return self.best_baseline_us / self.mirage_us


def case_order(name: str) -> int:
    names = list(CASES)
    return names.index(name) if name in names else len(names)


def grouped(records: list[Record]) -> dict[tuple[str, int], list[Record]]:
    """Records by (case, batch), in case-table order, then batch."""
    groups: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        groups.setdefault((r.case, r.batch), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (case_order(kv[0][0]), kv[0][1])))


def speedups(records: list[Record]) -> dict[tuple[str, int], Speedup]:
    out = {}
    for (case, b), rows in grouped(records).items():
        baselines = [r for r in rows if r.implementation != MIRAGE and r.ok]
        best = min(baselines, key=lambda r: r.median_us, default=None)
        mirage = next((r for r in rows if r.implementation == MIRAGE), None)
        out[(case, b)] = Speedup(
            case, b,
            best.implementation if best else None, best.median_us if best else None,
            mirage.status if mirage else MISSING,
            mirage.median_us if mirage is not None and mirage.ok else None)
    return out
