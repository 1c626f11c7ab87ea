"""Compare measured speedups with ``expected/``: our reference bands decide, the paper's claims
are shown beside them.

``expected/reference_bands.json`` holds one band per (GPU, case, batch): the speedup we measured
ourselves with its tolerance and provenance, or ``"status": "to be measured"`` until a run has
been adopted (``python -m scripts.verify --adopt --gpu h100``). ``expected/paper_claims.json``
holds the paper's statements (PAPER.md); they are printed, never a verdict, because the paper
gives most numbers only for some GPU or as a range over batch sizes.

Verdicts per (case, b): PASS (inside the band), MISS (outside), MISSING (a band, but no Mirage
speedup was measured), WRONG (Mirage failed its check: never acceptable), TO MEASURE (band not
measured yet), NO BAND (measured, no band), NOT RUN (a band for a batch size the run did not
plan, as under QUICK=1). MISS, MISSING and WRONG fail the check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from scripts.harness import records as rec
from scripts.harness.analysis import Speedup, case_order
from scripts.harness.cases import CASES

CLAIMS_FILE = "paper_claims.json"
BANDS_FILE = "reference_bands.json"
TO_BE_MEASURED = "to be measured"
MEASURED = "measured"

PASS, MISS, MISSING, WRONG = "PASS", "MISS", "MISSING", "WRONG"
NOT_RUN = "NOT RUN"  # a band for a batch size the run did not plan (QUICK=1): not a failure
TO_MEASURE, NO_BAND = "TO MEASURE", "NO BAND"
FAILING = (MISS, MISSING, WRONG)


class ExpectedError(Exception):
    """``expected/`` is malformed; the message names the file and entry."""


@dataclass(frozen=True)
class Band:
    gpu: str
    case: str
    batch: int
    status: str  # "measured" or "to be measured"
    speedup: float | None = None
    low: float | None = None
    high: float | None = None
    tolerance: float | None = None
    launch_bound: bool = False
    provenance: dict | None = None

    def text(self) -> str:
        if self.status != MEASURED:
            return TO_BE_MEASURED
        return f"{self.low:.2f}-{self.high:.2f}x"


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    text: str
    source: str
    case: str | None = None
    gpu: str | None = None  # None: the paper does not say which GPU
    low: float | None = None
    high: float | None = None

    def label(self) -> str:
        return f"{self.text} ({self.gpu.upper() if self.gpu else 'GPU not stated'})"


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExpectedError(f"{path}: missing (expected/ ships it; restore it with git)") \
            from None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or UTF-8
        raise ExpectedError(f"{path}: unreadable ({e})") from None
    if not isinstance(doc, dict):
        raise ExpectedError(f"{path}: not a JSON object")
    return doc


def _entries(path: Path, doc: dict, key: str) -> list[dict]:
    entries = doc.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ExpectedError(f"{path}: {key} is not a list of objects")
    return entries


def finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def band_problem(entry: dict) -> str | None:
    """Why a band entry cannot be used (None if it can): keys, types, and for a measured band
    finite positive numbers with low <= high."""
    if not isinstance(entry.get("gpu"), str) or not isinstance(entry.get("case"), str):
        return "gpu and case must be strings"
    if not isinstance(entry.get("batch"), int) or isinstance(entry.get("batch"), bool) \
            or entry["batch"] < 1:
        return f"batch {entry.get('batch')!r} is not a positive integer"
    if entry.get("status") != MEASURED:
        return None
    low, high, mid = entry.get("low"), entry.get("high"), entry.get("speedup")
    if not finite_positive(low) or not finite_positive(high):
        return f"a measured band needs finite positive low and high (got {low!r}, {high!r})"
    if low > high:
        return f"a measured band needs low <= high (got {low!r} > {high!r})"
    if mid is not None and not finite_positive(mid):
        return f"speedup {mid!r} is not a finite positive number"
    return None


def _typed(cls, entry: dict, where: str):
    try:
        return cls(**entry)
    except TypeError as e:
        raise ExpectedError(f"{where}: {e}") from None


def load_claims(expected: Path) -> list[Claim]:
    path = Path(expected) / CLAIMS_FILE
    return [_typed(Claim, c, f"{path}: claims[{i}]")
            for i, c in enumerate(_entries(path, _read(path), "claims"))]


def load_bands(expected: Path, name: str = BANDS_FILE) -> dict[tuple[str, str, int], Band]:
    path = Path(expected) / name
    bands: dict[tuple[str, str, int], Band] = {}
    for i, entry in enumerate(_entries(path, _read(path), "bands")):
        band = _typed(Band, entry, f"{path}: bands[{i}]")
        if band.status not in (MEASURED, TO_BE_MEASURED):
            raise ExpectedError(f"{path}: bands[{i}]: status {band.status!r}")
        problem = band_problem(entry)
        if problem:
            raise ExpectedError(f"{path}: bands[{i}] ({band.case} b={band.batch}): {problem}")
        key = (band.gpu, band.case, band.batch)
        if key in bands:
            raise ExpectedError(f"{path}: bands[{i}]: second band for {key}")
        bands[key] = band
    return bands


@dataclass(frozen=True)
class Row:
    gpu: str
    case: str
    batch: int
    measured: Speedup | None
    band: Band | None
    claims: tuple[Claim, ...]
    verdict: str


def verdict(measured: Speedup | None, band: Band | None) -> str:
    if measured is not None and measured.mirage_status == rec.WRONG:
        return WRONG
    if band is None:
        return NO_BAND
    if band.status != MEASURED:
        return TO_MEASURE
    if measured is None or measured.speedup is None:
        return MISSING
    return PASS if band.low <= measured.speedup <= band.high else MISS


def check(gpu: str, measured: dict[tuple[str, int], Speedup], bands: dict,
          claims: list[Claim], batches: list[int] | None = None) -> list[Row]:
    """One row per (case, b) that was measured or has a band on ``gpu``. With ``batches`` (the
    run's plan), a band for another batch size reads NOT RUN instead of MISSING."""
    keys = set(measured) | {(c, b) for g, c, b in bands if g == gpu}
    rows = []
    for case, b in sorted(keys, key=lambda k: (case_order(k[0]), k[1])):
        band = bands.get((gpu, case, b))
        s = measured.get((case, b))
        mine = tuple(c for c in claims if c.figure == "fig7" and c.case == case
                     and c.gpu in (None, gpu))
        rows.append(Row(gpu, case, b, s, band, mine, planned_verdict(s, band, b, batches)))
    return rows


def planned_verdict(measured: Speedup | None, band: Band | None, b: int,
                    batches: list[int] | None) -> str:
    """``verdict``, except NOT RUN for an unmeasured batch size outside the run's plan."""
    if measured is None and batches is not None and b not in batches:
        return NOT_RUN
    return verdict(measured, band)


def failed(rows: list[Row]) -> bool:
    return any(r.verdict in FAILING for r in rows)


def measured_text(s: Speedup | None) -> str:
    if s is None:
        return "not measured"
    if s.speedup is None:
        return f"mirage {s.mirage_status}" if s.mirage_status != rec.OK else "no baseline"
    return (f"{s.speedup:.2f}x ({s.mirage_us:.1f} vs {s.best_baseline_us:.1f} us "
            f"{s.best_baseline})")


def render(rows: list[Row]) -> str:
    from tabulate import tabulate

    table = [[r.case, r.batch, measured_text(r.measured), r.band.text() if r.band else "-",
              "; ".join(c.label() for c in r.claims) or "-", r.verdict] for r in rows]
    return tabulate(table, headers=["case", "b", "measured", "expected band", "paper claim",
                                    "verdict"], tablefmt="github", disable_numparse=True)


# --- proposing and adopting bands ---------------------------------------------------------------

TOLERANCE = 0.15  # relative half-width of a band
LAUNCH_BOUND_TOLERANCE = 0.35  # where a few microseconds of launch latency dominate


def propose_bands(meta: dict, measured: dict[tuple[str, int], Speedup]) -> list[dict]:
    """Bands around this run's speedups, with its provenance (for ``expected/``)."""
    gpu_info = meta.get("gpu_info", {})
    provenance = {"run_id": meta.get("run_id"), "commit": meta.get("commit"),
                  "measured_at": meta.get("started"), "gpu_name": gpu_info.get("name"),
                  "gpu_uuid": gpu_info.get("uuid"), "driver": gpu_info.get("driver"),
                  "code_fingerprint": meta.get("code", {}).get("fingerprint"),
                  "method": meta.get("method")}
    bands = []
    for (case, b), s in measured.items():
        if s.speedup is None:
            continue
        if not finite_positive(s.speedup):  # the run's checks make this unreachable: belt
            raise ExpectedError(f"speedup of {case} b={b} is {s.speedup!r}: no band from it")
        launch_bound = case in CASES and b in CASES[case].launch_bound
        tol = LAUNCH_BOUND_TOLERANCE if launch_bound else TOLERANCE
        bands.append({"gpu": meta["gpu"], "case": case, "batch": b, "status": MEASURED,
                      "speedup": round(s.speedup, 4), "low": round(s.speedup * (1 - tol), 4),
                      "high": round(s.speedup * (1 + tol), 4), "tolerance": tol,
                      "launch_bound": launch_bound,
                      "provenance": {**provenance, "mirage_us": s.mirage_us,
                                     "best_baseline": s.best_baseline,
                                     "best_baseline_us": s.best_baseline_us}})
    return bands


def adopt(expected: Path, gpu: str, proposed: list[dict], name: str = BANDS_FILE) -> str:
    """Replace ``gpu``'s bands in ``expected/<name>`` (Figure 7's by default) by ``proposed``;
    keep the rest (other GPUs; this GPU's cases the run did not measure). Returns the new file
    text."""
    path = Path(expected) / name
    doc = _read(path)
    load_bands(expected, name)  # the file as it is must be sound before anything is added
    for i, b in enumerate(proposed):
        problem = band_problem(b) if isinstance(b, dict) else "not an object"
        if problem or b.get("gpu") != gpu:
            raise ExpectedError(f"not adopted: proposed band {i} ({b.get('case')} "
                                f"b={b.get('batch')}): {problem or 'another GPU'}")
    new = {(b["gpu"], b["case"], b["batch"]): b for b in proposed}
    bands = [b for b in doc.get("bands", []) if (b["gpu"], b["case"], b["batch"]) not in new]
    bands += proposed
    bands.sort(key=lambda b: (b["gpu"], case_order(b["case"]), b["batch"]))
    doc["bands"] = bands
    try:
        return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as e:  # NaN or inf anywhere, provenance included
        raise ExpectedError(f"not adopted: {path} would hold a non-finite number ({e})") \
            from None
