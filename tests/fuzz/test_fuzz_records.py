"""Fuzzing the records loader and the checker (issue 15): random and mutated record lines (wrong
types, missing or unknown fields, NaN, huge numbers, truncated lines, junk) never raise anything
but the harness's own errors (``ValueError`` from ``Record.from_json``, ``ResultsError`` from
``load_run`` and the consistency checks), and a run holding a contradictory record never gets a
PASS verdict, nor bands adopted from it. Bounded: a few seconds on 2 cores."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirage.profile.timing import METHOD
from scripts import verify
from scripts.harness import sanity
from scripts.harness.records import Record, ResultsError, load_run

REPO = Path(__file__).resolve().parents[2]
RUN_ID, GPU = "fuzz-run", "h100"
FIELDS = ("case", "batch", "implementation", "family", "status", "gpu", "run_id", "commit",
          "timestamp", "method", "median_us", "p10_us", "p90_us", "samples_us",
          "calls_per_sample", "warm_median_us", "correct", "rel_err", "tolerance", "error",
          "detail")


def ok(case: str, impl: str, us: float) -> dict:
    return {"case": case, "batch": 1, "implementation": impl, "family": "pytorch",
            "status": "ok", "gpu": GPU, "run_id": RUN_ID, "commit": "c", "timestamp": "t",
            "method": METHOD, "median_us": us, "p10_us": us, "p90_us": us,
            "samples_us": [us * 0.99, us, us, us, us * 1.01], "calls_per_sample": 128,
            "warm_median_us": None, "correct": True, "rel_err": 0.001, "tolerance": 0.01,
            "error": None, "detail": {}}


def base_records() -> list[dict]:
    """gqa b=1 at 2.0x and rmsnorm b=1 at 1.1x: both inside the bands below."""
    return [ok("gqa", "sdpa-flash", 20.0), ok("gqa", "mirage", 10.0),
            ok("rmsnorm", "torch.compile", 22.0), ok("rmsnorm", "mirage", 20.0)]


META = {"run_id": RUN_ID, "gpu": GPU, "complete": True, "method": METHOD, "commit": "c",
        "gpu_info": {"name": "NVIDIA H100 80GB HBM3"}, "gpu_override": None,
        "settings": {"samples": 5, "device": "cuda"},
        "plan": {"cases": ["gqa", "rmsnorm"], "batches": [1]}, "code": {}}
BANDS = [{"gpu": GPU, "case": c, "batch": 1, "status": "measured", "speedup": s, "low": lo,
          "high": hi, "tolerance": 0.15} for c, s, lo, hi in (("gqa", 2.0, 1.7, 2.3),
                                                             ("rmsnorm", 1.1, 1.0, 1.2))]

# Anything JSON can hold, hostile numbers first.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2**63, 10**30, 0.0, -0.0, 1e-300, 1e308, 1e400, -1e400,
                     math.nan, math.inf, -math.inf]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["ok", "wrong", "gqa", "mirage", "h100", METHOD]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                       st.dictionaries(st.text(max_size=4),
                                                                       inner, max_size=3)),
                      max_leaves=8)


@st.composite
def mutated_record(draw) -> dict:
    d = dict(draw(st.sampled_from(base_records())))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        name = draw(st.sampled_from(FIELDS))
        if action == "set":
            d[name] = draw(values)
        elif action == "delete":
            d.pop(name, None)
        else:
            d[draw(st.text(min_size=1, max_size=6))] = draw(values)
    return d


def dumps(d) -> str:
    return json.dumps(d)  # NaN and Infinity as a forger's file would hold them


@st.composite
def hostile_line(draw) -> str:
    kind = draw(st.sampled_from(["record", "truncated", "junk", "value"]))
    if kind == "record":
        return dumps(draw(mutated_record()))
    if kind == "truncated":
        line = dumps(draw(mutated_record()))
        return line[:draw(st.integers(0, max(0, len(line) - 1)))]
    if kind == "value":
        return dumps(draw(values))
    return draw(st.text(max_size=40)).replace("\n", " ")


def publish(root: Path, lines: list[str]) -> Path:
    d = root / "results" / GPU
    d.mkdir(parents=True, exist_ok=True)
    text = "".join(x + "\n" for x in lines)
    (d / "records.jsonl").write_text(text)
    meta = {**META, "records_sha256": hashlib.sha256(text.encode()).hexdigest()}
    (d / "metadata.json").write_text(json.dumps(meta))
    return d


def expected(root: Path) -> Path:
    e = root / "expected"
    e.mkdir(exist_ok=True)
    shutil.copy(REPO / "expected" / "paper_claims.json", e / "paper_claims.json")
    (e / "reference_bands.json").write_text(json.dumps({"bands": BANDS}))
    (e / "fig11_bands.json").write_text(json.dumps({"bands": []}))
    return e


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(hostile_line())
def test_loader_raises_only_its_own_errors(line):
    try:
        r = Record.from_json(line)
    except ValueError:
        r = None
    with tempfile.TemporaryDirectory() as tmp:
        lines = [dumps(x) for x in base_records()] + [line]
        try:
            meta, records = load_run(publish(Path(tmp), lines))
        except ResultsError:
            assert r is None or r.run_id != RUN_ID or r.gpu != GPU
            return
        found = sanity.problems(meta, records)
        assert isinstance(found, list) and all(isinstance(x, str) for x in found)


# Each makes the record contradict itself, its case or its run, whatever else is mutated.
CONTRADICTIONS = {
    "rel_err above tolerance": lambda d: d.update(rel_err=0.5),
    "zero median": lambda d: d.update(median_us=0.0),
    "negative median": lambda d: d.update(median_us=-3.0),
    "NaN median": lambda d: d.update(median_us=math.nan),
    "median outside samples": lambda d: d.update(median_us=d["samples_us"][-1] * 3),
    "too few samples": lambda d: d.update(samples_us=d["samples_us"][:2]),
    "unknown method": lambda d: d.update(method="wall-clock"),
    "case not in table": lambda d: d.update(case="gemm"),
    "batch not planned": lambda d: d.update(batch=16),
    "sample NaN": lambda d: d["samples_us"].__setitem__(0, math.nan),
    "sample zero": lambda d: d["samples_us"].__setitem__(0, 0.0),
    "correct false": lambda d: d.update(correct=False),
}
# Mutations that keep the record consistent (noise the checker must see through).
NOISE_FIELDS = ("commit", "timestamp", "error", "detail", "warm_median_us", "family")


@FUZZ
@given(st.sampled_from(sorted(CONTRADICTIONS)), st.integers(0, 3),
       st.lists(st.tuples(st.sampled_from(NOISE_FIELDS), values), max_size=3),
       st.booleans())
def test_contradictory_records_never_pass_nor_get_adopted(name, index, noise, adopt):
    records = base_records()
    victim = records[index]
    for field, value in noise:
        victim[field] = value
    CONTRADICTIONS[name](victim)
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(verify, "stale_reason", lambda meta, root=None: None), \
            mock.patch("sys.stdout"), mock.patch("sys.stderr") as err:
        root = Path(tmp)
        publish(root, [dumps(r) for r in records])
        exp = expected(root)
        before = (exp / "reference_bands.json").read_bytes()
        argv = ["--results", str(root / "results"), "--expected", str(exp)]
        code = verify.main(argv + (["--gpu", GPU, "--adopt"] if adopt else []))
        said = "".join(str(c.args[0]) for c in err.write.call_args_list if c.args)
        assert (exp / "reference_bands.json").read_bytes() == before
    assert code == 1, (name, noise, said)
    assert "internal error" not in said and "Traceback" not in said
