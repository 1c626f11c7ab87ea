"""Typed measurement records and the results directory that holds one complete run.

A record is one JSON line: one implementation of one case at one batch size, with its status,
correctness, timing method, raw samples and provenance. ``results/<gpu>/`` holds the files of the
last complete run::

    records.jsonl         one Record per line
    metadata.json         the run's provenance (GPU, versions, commit, options) and, last of all,
                          ``records_sha256``: the digest of records.jsonl
    table.txt, fig7.png   derived from the records (``python -m scripts.report`` redraws them)
    proposed_bands.json   reference bands derived from this run, for expected/

A run stages its files in a private directory and moves them in place at the end, metadata.json
last. ``load_run`` trusts a directory only when metadata.json is there and names the digest of the
records beside it and every record carries the run's id and GPU; an interrupted run therefore
leaves nothing a later reader trusts, and records of two runs are never mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mirage.ir.serialize import atomic_write_text

RECORDS = "records.jsonl"
METADATA = "metadata.json"
RUN_FILE = "run.json"  # in a staging directory: the run's id, seed and identity
OUTPUTS = (RECORDS, "table.txt", "fig7.png", "proposed_bands.json", METADATA)

# Record.status values
OK = "ok"
WRONG = "wrong"
NOT_AVAILABLE = "not available"
ERROR = "error"
STATUSES = (OK, WRONG, NOT_AVAILABLE, ERROR)


class ResultsError(Exception):
    """A results directory that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Record:
    """One implementation of one case at one batch size.

    ``status`` is ``ok`` (checked correct, then timed), ``wrong`` (failed the check: never
    timed, never a speedup), ``not available`` (``error`` holds the reason) or ``error`` (it
    raised). Times are microseconds per call.
    """

    case: str
    batch: int
    implementation: str
    family: str
    status: str
    gpu: str
    run_id: str
    commit: str
    timestamp: str
    method: str | None = None
    median_us: float | None = None
    p10_us: float | None = None
    p90_us: float | None = None
    samples_us: tuple[float, ...] = ()
    calls_per_sample: int | None = None
    warm_median_us: float | None = None
    correct: bool | None = None
    rel_err: float | None = None
    tolerance: float | None = None
    error: str | None = None
    detail: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if self.status == OK and (self.median_us is None or self.correct is not True):
            raise ValueError("an ok record needs a median and a passed check")
        if self.status != OK and self.median_us is not None:
            raise ValueError(f"a record with status {self.status!r} has no time")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def describe(self) -> str:
        """A short cell for tables: the median, or the status and its reason."""
        if self.ok:
            return f"{self.median_us:.1f} us"
        return self.status if not self.error else f"{self.status}: {self.error}"

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["samples_us"] = list(self.samples_us)
        return json.dumps(d, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> Record:
        """The record on one JSON line; ``ValueError`` naming the field for anything else
        (not an object, unknown or missing field, wrong type, NaN or infinite number)."""
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"not JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"not a JSON object but {type(d).__name__}")
        unknown = set(d) - set(FIELD_TYPES)
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        missing = [n for n in REQUIRED if n not in d]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        for name, value in d.items():
            _check_type(name, value)
        d["samples_us"] = tuple(d.get("samples_us", ()))
        return cls(**d)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_type(name: str, value) -> None:
    """``ValueError`` naming ``name`` when ``value`` is not of its field's JSON type."""
    kind, optional = FIELD_TYPES[name]
    if value is None and optional:
        return
    if kind == "number":
        if not _number(value):
            raise ValueError(f"field {name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"field {name}: {value!r} is not finite")
        return
    if kind == "numbers":
        if not isinstance(value, list):
            raise ValueError(f"field {name}: not a list of numbers")
        for i, x in enumerate(value):
            if not _number(x) or not math.isfinite(x):
                raise ValueError(f"field {name}[{i}]: {x!r} is not a finite number")
        return
    expected = {"str": str, "int": int, "bool": bool, "dict": dict}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise ValueError(f"field {name}: {value!r} is not {'an' if kind == 'int' else 'a'} "
                         f"{kind}")
    if kind == "dict" and not _all_finite(value):  # to_json could not write it back
        raise ValueError(f"field {name}: holds a NaN or infinite number")


def _all_finite(x, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_all_finite(v, depth + 1) for v in x.values())
    if isinstance(x, list):
        return all(_all_finite(v, depth + 1) for v in x)
    return True


# JSON type of each field (``numbers``: a list of finite numbers) and whether null is allowed.
FIELD_TYPES = {
    "case": ("str", False), "batch": ("int", False), "implementation": ("str", False),
    "family": ("str", False), "status": ("str", False), "gpu": ("str", False),
    "run_id": ("str", False), "commit": ("str", False), "timestamp": ("str", False),
    "method": ("str", True), "median_us": ("number", True), "p10_us": ("number", True),
    "p90_us": ("number", True), "samples_us": ("numbers", False),
    "calls_per_sample": ("int", True), "warm_median_us": ("number", True),
    "correct": ("bool", True), "rel_err": ("number", True), "tolerance": ("number", True),
    "error": ("str", True), "detail": ("dict", False),
}
REQUIRED = ("case", "batch", "implementation", "family", "status", "gpu", "run_id", "commit",
            "timestamp")


def finite(x: float | None) -> float | None:
    """JSON has no inf/NaN: store them as None."""
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


def dumps_records(records: list[Record]) -> str:
    return "".join(r.to_json() + "\n" for r in records)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Binary twin of ``atomic_write_text`` (same temp-file-and-rename scheme)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:  # keep the mode of the file it replaces (mkstemp creates 0600)
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- one run: staging, then publishing ---------------------------------------------------------


class Staging:
    """The private directory a run writes into before it publishes to ``results/<gpu>/``.

    Records are appended to ``records.jsonl.partial`` as they are measured: a crash leaves them
    nowhere a reader would trust them, but an explicit resume (``Staging.resume``) of the same
    run (same ``identity``: GPU, code, plan, settings) continues from them, keeping the run's id
    and input seed. A run only ever removes its own staging directory (when it publishes):
    another run's, live or interrupted, is left alone (``interrupted`` lists them).
    """

    outputs = OUTPUTS  # the files ``publish`` moves in place, metadata last (fig11: its own)

    def __init__(self, results_root: Path, gpu: str, run_id: str, identity: dict | None = None,
                 seed: int | None = None, *, _existing: bool = False):
        self.final = Path(results_root) / gpu
        self.dir = Path(results_root) / f".staging-{gpu}-{run_id}"
        self.run_id, self.gpu, self.seed = run_id, gpu, seed
        self.partial = self.dir / f"{RECORDS}.partial"
        self.records: list[Record] = []
        if _existing:
            return
        self.dir.mkdir(parents=True)  # exists already: another run's id; refuse, never share
        atomic_write_text(self.dir / RUN_FILE, json.dumps(
            {"run_id": run_id, "seed": seed, "identity": identity,
             "owner": {"pid": os.getpid(), "host": socket.gethostname()}}, sort_keys=True))

    @staticmethod
    def interrupted(results_root: Path, gpu: str) -> list[Path]:
        """Staging directories of ``gpu`` left by interrupted runs (kept for ``--resume``)."""
        return sorted(Path(results_root).glob(f".staging-{gpu}-*"))

    @classmethod
    def resume(cls, results_root: Path, gpu: str, identity: dict) -> Staging | None:
        """The newest interrupted run of ``gpu`` with exactly this identity, or None."""
        dirs = sorted(Path(results_root).glob(f".staging-{gpu}-*"), reverse=True)
        for d in dirs:
            try:
                info = json.loads((d / RUN_FILE).read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if info.get("identity") != identity:
                continue
            staging = cls(results_root, gpu, info["run_id"], identity, info.get("seed"),
                          _existing=True)
            staging.records = staging._read_partial()
            return staging
        return None

    def _read_partial(self) -> list[Record]:
        """The records measured so far; a line torn by the interruption is dropped."""
        good, kept = [], []
        try:
            lines = self.partial.read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                r = Record.from_json(line)
            except (ValueError, TypeError):
                continue
            if r.run_id == self.run_id and r.gpu == self.gpu:
                good.append(r)
                kept.append(line)
        atomic_write_text(self.partial, "".join(x + "\n" for x in kept))
        return good

    def done(self) -> set[tuple[str, int, str]]:
        return {(r.case, r.batch, r.implementation) for r in self.records}

    def add(self, record: Record) -> None:
        if record.run_id != self.run_id or record.gpu != self.gpu:
            raise ValueError("record from another run or GPU")
        self.records.append(record)
        with open(self.partial, "a") as f:
            f.write(record.to_json() + "\n")

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.dir / name, text)

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.dir / name, data)

    def publish(self, metadata: dict) -> Path:
        """Move the staged files to ``results/<gpu>/``; metadata.json (with the digest) last."""
        text = dumps_records(self.records)
        self.write_text(RECORDS, text)
        self.partial.unlink(missing_ok=True)
        meta = {**metadata, "run_id": self.run_id, "gpu": self.gpu, "complete": True,
                "records": len(self.records), "records_sha256": sha256_text(text)}
        self.final.mkdir(parents=True, exist_ok=True)
        (self.final / METADATA).unlink(missing_ok=True)  # from here the old run is untrusted
        for name in self.outputs[:-1]:
            staged, target = self.dir / name, self.final / name
            if staged.exists():
                os.replace(staged, target)
            else:
                target.unlink(missing_ok=True)  # never leave a derived file of an older run
        atomic_write_text(self.final / METADATA, json.dumps(meta, indent=1, sort_keys=True))
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.final


def load_run(directory: Path) -> tuple[dict, list[Record]]:
    """The metadata and records of a complete run in ``directory``, or ``ResultsError``."""
    directory = Path(directory)
    meta_path, rec_path = directory / METADATA, directory / RECORDS
    if not meta_path.exists():
        what = "an incomplete run" if rec_path.exists() else "no run"
        raise ResultsError(f"{directory}: {what} (no {METADATA})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or UTF-8
        raise ResultsError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise ResultsError(f"{meta_path}: not a JSON object")
    if meta.get("complete") is not True:
        raise ResultsError(f"{meta_path}: run not marked complete")
    for key in ("gpu", "run_id", "records_sha256"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ResultsError(f"{meta_path}: field {key} missing or not a string")
    try:
        text = rec_path.read_text()
    except (OSError, ValueError) as e:
        raise ResultsError(f"{rec_path}: unreadable ({e})") from None
    if sha256_text(text) != meta.get("records_sha256"):
        raise ResultsError(f"{rec_path}: does not match the digest in {METADATA} "
                           "(written by another or an interrupted run)")
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        try:
            records.append(Record.from_json(line))
        except (ValueError, TypeError) as e:
            raise ResultsError(f"{rec_path}:{i}: {e}") from None
    if not records:
        raise ResultsError(f"{rec_path}: no records")
    for r in records:
        if r.run_id != meta.get("run_id") or r.gpu != meta.get("gpu"):
            raise ResultsError(f"{rec_path}: a record of run {r.run_id} on {r.gpu} in run "
                               f"{meta.get('run_id')} on {meta.get('gpu')}")
    return meta, records
