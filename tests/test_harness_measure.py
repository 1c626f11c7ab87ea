"""The measuring path on the CPU with a fake timer: wrong implementations and wrong Mirage
candidates are reported wrong (never fast), the choice cache cannot go stale, and one fig7 run
publishes results that verify reads back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from expected_fixture import unmeasured_expected

from baselines import Baseline, NotAvailable, registry
from mirage.api import new_kernel_graph
from mirage.ir import save
from mirage.semantics import FloatSemantics, evaluate
from mirage.workloads import program, reference
from scripts import fig7, verify
from scripts.harness import checker, mirage_side
from scripts.harness import records as rec
from scripts.harness import run as run_module
from scripts.harness.analysis import speedups
from scripts.harness.cases import CASES
from scripts.harness.measure import Context, Settings, rotation_sets
from scripts.harness.metadata import GpuInfo
from scripts.harness.run import Plan, run

BASELINE_US = 10.0
REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class FakeTiming:
    method: str
    median_us: float
    p10_us: float
    p90_us: float
    samples_us: tuple
    calls_per_sample: int


def fake_timer(fn, input_sets, samples):
    """Times are whatever the callable says (``fake_us``), else BASELINE_US."""
    assert input_sets and all(isinstance(t, torch.Tensor) for t in input_sets[0])
    us = getattr(fn, "fake_us", BASELINE_US)
    return FakeTiming("fake", us, 0.9 * us, 1.1 * us, (us,) * samples, 128)


def walker_compiler(times: dict[str, float]):
    """A stand-in for mirage.runtime.compile: the float semantics walker on the CPU."""
    def compile_graph(graph):
        def fn(*xs):
            outs = evaluate(graph, [x.double().numpy() for x in xs], FloatSemantics(np.float64))
            return [torch.from_numpy(np.array(o)).to(xs[0].dtype) for o in outs]
        fn.fake_us = times.get(graph.digest, 5.0)
        return fn
    return compile_graph


def wrong_ntrans(b: int = 1):
    """rms_norm(X + alpha (H - X)): nTrans without the inner rms_norm of H."""
    g = new_kernel_graph()
    h, x, alpha = (g.new_input(s, "fp16", k) for k, s in CASES["ntrans"].shapes(b).items())
    g.mark_output(g.rms_norm(g.add(x, g.mul(alpha, g.sub(h, x)))))
    return g.kernel_graph()


GOOD = reference("ntrans", 1)
BAD = wrong_ntrans()
TIMES = {BAD.digest: 1.0, GOOD.digest: 4.0}  # the wrong candidate is the "fastest"


def _zeros(*xs):
    return torch.zeros_like(xs[0])


def _raises(*xs):
    raise RuntimeError("kernel exploded")


_zeros.fake_us = 0.1  # a wrong baseline that would be the fastest


def _unavailable(case, shapes, device):
    raise NotAvailable("no such library here")


EXTRA = {
    "fast-wrong": Baseline("fast-wrong", "test", frozenset({"ntrans"}), lambda c, s, d: _zeros),
    "raises": Baseline("raises", "test", frozenset({"ntrans"}), lambda c, s, d: _raises),
    "absent": Baseline("absent", "test", frozenset({"ntrans"}), _unavailable),
}


@pytest.fixture(autouse=True)
def fixed_code(monkeypatch):
    """The tree may change under a running test (others edit it): pin the code fingerprint."""
    from scripts.harness import metadata

    for module in (metadata, mirage_side, verify):
        monkeypatch.setattr(module, "code_fingerprint", lambda *a, **k: "pinned")


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setattr(run_module, "registry", lambda: {**registry(), **EXTRA})


def context(sink, log=None):
    return Context("testgpu", "run-1", "abc", Settings(seed=7, device="cpu", samples=5),
                   fake_timer, sink, log or (lambda line: None), gpu_key="GPU-test")


def saved(tmp_path, graphs, b=1):
    d = tmp_path / "saved"
    d.mkdir(exist_ok=True)
    save(d / f"ntrans_b{b}.json", graphs, program=program("ntrans", b))
    return d


def measure_ntrans(tmp_path, graphs, baselines=("eager",), compile_graph=None):
    case = dataclasses.replace(CASES["ntrans"], baselines=baselines)
    out: list[rec.Record] = []
    plan = Plan((case,), (1,), None, True, saved(tmp_path, graphs), tmp_path / "cache")
    run(context(out.append), plan, compile_graph or walker_compiler(TIMES))
    return {r.implementation: r for r in out}


def test_wrong_candidate_loses_to_a_slower_correct_one(tmp_path):
    got = measure_ntrans(tmp_path, [BAD, GOOD])
    m = got["mirage"]
    assert m.status == rec.OK and m.median_us == TIMES[GOOD.digest]
    assert m.detail["index"] == 1 and m.detail["wrong"] == 1 and m.detail["cached"] is False
    assert m.rel_err is not None and m.rel_err <= CASES["ntrans"].tolerance
    s = speedups(list(got.values()))[("ntrans", 1)]
    assert s.best_baseline == "eager" and s.speedup == pytest.approx(BASELINE_US / 4.0)


def test_only_wrong_candidates_make_mirage_wrong_not_fast(tmp_path):
    got = measure_ntrans(tmp_path, [BAD])
    m = got["mirage"]
    assert m.status == rec.WRONG and m.median_us is None and m.correct is False
    assert m.detail["wrong"] == 1
    s = speedups(list(got.values()))[("ntrans", 1)]
    assert s.speedup is None and s.mirage_status == rec.WRONG
    band = checker.Band("testgpu", "ntrans", 1, checker.MEASURED, 2.0, 1.0, 3.0)
    rows = checker.check("testgpu", {("ntrans", 1): s}, {("testgpu", "ntrans", 1): band}, [])
    assert rows[0].verdict == checker.WRONG and checker.failed(rows)


def test_wrong_baseline_is_wrong_and_never_the_best(tmp_path, fake_registry):
    got = measure_ntrans(tmp_path, [GOOD], baselines=("eager", "fast-wrong", "raises", "absent"))
    assert got["fast-wrong"].status == rec.WRONG and got["fast-wrong"].median_us is None
    assert "tolerance" in got["fast-wrong"].error
    assert got["raises"].status == rec.ERROR and "kernel exploded" in got["raises"].error
    assert got["absent"].status == rec.NOT_AVAILABLE
    assert got["absent"].error == "no such library here"
    s = speedups(list(got.values()))[("ntrans", 1)]
    assert s.best_baseline == "eager" and s.best_baseline_us == BASELINE_US


def test_choice_is_cached_and_a_changed_file_is_profiled_again(tmp_path):
    assert measure_ntrans(tmp_path, [BAD, GOOD])["mirage"].detail["cached"] is False
    again = measure_ntrans(tmp_path, [BAD, GOOD])["mirage"]
    assert again.detail["cached"] is True and again.detail["index"] == 1
    # Same graphs, other order: the old choice (index 1) would now be the wrong graph.
    swapped = measure_ntrans(tmp_path, [GOOD, BAD])["mirage"]
    assert swapped.detail["cached"] is False and swapped.detail["index"] == 0
    assert swapped.status == rec.OK


def test_a_poisoned_cache_entry_is_still_checked(tmp_path):
    measure_ntrans(tmp_path, [BAD, GOOD])
    entry_path = next((tmp_path / "cache").rglob("ntrans_b1.json"))
    entry = json.loads(entry_path.read_text())
    entry.update(index=0, digest=BAD.digest)  # someone points the cache at the wrong graph
    entry_path.write_text(json.dumps(entry))
    m = measure_ntrans(tmp_path, [BAD, GOOD])["mirage"]
    assert m.status == rec.WRONG and m.median_us is None


def test_mirage_not_available_without_runtime_or_file(tmp_path, monkeypatch):
    out: list[rec.Record] = []
    ctx = context(out.append)
    with pytest.raises(NotAvailable, match="no saved"):
        mirage_side.prepare(ctx, CASES["ntrans"], 8, [], saved_dir=tmp_path,
                            cache_root=tmp_path)
    import sys
    monkeypatch.setitem(sys.modules, "mirage.runtime", None)  # import fails
    with pytest.raises(NotAvailable, match="mirage.runtime not importable"):
        mirage_side.load_compiler()


def test_saved_program_must_be_the_canonical_one(tmp_path):
    d = tmp_path / "saved"
    d.mkdir()
    save(d / "ntrans_b1.json", [GOOD], program=BAD)
    with pytest.raises(Exception, match="not the canonical"):
        mirage_side.prepare(context(lambda r: None), CASES["ntrans"], 1, [], saved_dir=d,
                            cache_root=tmp_path, compile_graph=walker_compiler({}))


def test_rotation_sets_defeat_l2_within_limits():
    ctx = context(lambda r: None)
    small = rotation_sets(ctx, CASES["ntrans"], 1, CASES["ntrans"].shapes(1))
    assert len(small) == ctx.settings.max_sets  # 24 KB per set: capped at one per call
    s = dataclasses.replace(ctx.settings, l2_bytes=2**20)
    ctx_small_l2 = dataclasses.replace(ctx, settings=s)
    lora = rotation_sets(ctx_small_l2, CASES["lora"], 1, CASES["lora"].shapes(1))
    assert len(lora) == 2  # 2.2 MB per set already exceeds twice a 1 MB L2
    assert not torch.equal(lora[0][0], lora[1][0])


# --- one fig7 run end to end, then verify --------------------------------------------------------

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "h100", "GPU-fake", 0, None, (9, 0), 50 * 2**20,
               "no NVML in tests")


def fig7_cpu(tmp_path, *extra):
    save(tmp_path / "saved" / "ntrans_b1.json", [BAD, GOOD], program=program("ntrans", 1))
    return fig7.main(["--gpu", "h100", "--cases", "ntrans", "--batches", "1", "--baselines",
                      "eager,taso", "--device", "cpu", "--samples", "5", "--results",
                      str(tmp_path / "results"), "--saved", str(tmp_path / "saved"), "--cache",
                      str(tmp_path / "cache"), *extra],
                     detect=lambda: H100, timer_loader=lambda n: (fake_timer, "fake"),
                     compile_graph=walker_compiler(TIMES))


def test_fig7_publishes_and_verify_checks(tmp_path, capsys):
    assert fig7_cpu(tmp_path) == 0
    out = tmp_path / "results" / "h100"
    meta, records = rec.load_run(out)
    assert meta["gpu"] == "h100" and meta["method"] == "fake" and meta["gpu_override"] is None
    assert {r.implementation: r.status for r in records} == {
        "eager": rec.OK, "taso": rec.NOT_AVAILABLE, "mirage": rec.OK}
    assert (out / "fig7.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.txt").read_text()
    assert "ntrans" in table and "2.50x" in table and "not reproducible" in table
    proposed = json.loads((out / "proposed_bands.json").read_text())
    assert proposed[0]["speedup"] == pytest.approx(2.5) and proposed[0]["launch_bound"]
    assert not list((tmp_path / "results").glob(".staging-*"))

    # Our expected/ with every band back to "to be measured", so nothing fails yet.
    expected = _unmeasured_expected(tmp_path)
    args = ["--results", str(tmp_path / "results"), "--expected", str(expected)]
    assert verify.main(args) == 0
    assert "TO MEASURE" in capsys.readouterr().out
    # Adopting the run turns its row into a measured band, which then passes.
    assert verify.main([*args, "--gpu", "h100", "--adopt"]) == 0
    assert "PASS" in capsys.readouterr().out
    bands = checker.load_bands(expected)
    band = bands[("h100", "ntrans", 1)]
    assert band.status == checker.MEASURED and band.provenance["run_id"] == meta["run_id"]
    assert bands[("h100", "gqa", 1)].status == checker.TO_BE_MEASURED  # not measured: kept


def _unmeasured_expected(tmp_path):
    return unmeasured_expected(tmp_path / "expected")


def test_stale_results_are_refused(tmp_path, capsys, monkeypatch):
    assert fig7_cpu(tmp_path) == 0
    monkeypatch.setattr(verify, "code_fingerprint", lambda *a, **k: "other code")
    expected = _unmeasured_expected(tmp_path)
    args = ["--results", str(tmp_path / "results"), "--expected", str(expected)]
    assert verify.main(args) == 1
    assert "stale" in capsys.readouterr().err
    assert verify.main([*args, "--allow-stale"]) == 0


def test_interrupted_run_publishes_nothing_and_resumes(tmp_path, capsys):
    calls, interrupted = [], []

    def dying_timer(fn, input_sets, samples):
        calls.append(fn)
        if len(calls) == 2 and not interrupted:  # the first Mirage candidate: ^C
            interrupted.append(True)
            raise KeyboardInterrupt
        return fake_timer(fn, input_sets, samples)

    save(tmp_path / "saved" / "ntrans_b1.json", [GOOD], program=program("ntrans", 1))
    args = ["--gpu", "h100", "--cases", "ntrans", "--batches", "1", "--baselines", "eager",
            "--device", "cpu", "--samples", "5", "--results", str(tmp_path / "results"),
            "--saved", str(tmp_path / "saved"), "--cache", str(tmp_path / "cache")]
    kw = {"detect": lambda: H100, "compile_graph": walker_compiler(TIMES)}
    assert fig7.main(args, timer_loader=lambda n: (dying_timer, "fake"), **kw) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / "results" / "h100").exists()
    (staged,) = (tmp_path / "results").glob(".staging-h100-*")

    calls.clear()
    assert fig7.main([*args, "--resume"], timer_loader=lambda n: (dying_timer, "fake"), **kw) == 0
    assert len(calls) == 2  # Mirage's profile and its timing; eager was kept, not re-timed
    meta, records = rec.load_run(tmp_path / "results" / "h100")
    assert staged.name.endswith(meta["run_id"]) and meta["resumed"] == {"records_kept": 1}
    assert [r.implementation for r in records] == ["eager", "mirage"]
    # With other settings nothing is resumed: a fresh run.
    assert fig7.main([*args, "--resume", "--samples", "6"],
                     timer_loader=lambda n: (fake_timer, "fake"), **kw) == 0
    assert "starting afresh" in capsys.readouterr().err


def test_failing_derived_files_lose_only_themselves(tmp_path, capsys, monkeypatch):
    import sys

    from scripts.harness import plot

    def broken(*a, **k):
        raise RuntimeError("no display")

    monkeypatch.setattr(plot, "render", broken)
    monkeypatch.setitem(sys.modules, "tabulate", None)  # a machine without tabulate
    assert fig7_cpu(tmp_path) == 0
    out = tmp_path / "results" / "h100"
    err = capsys.readouterr().err
    assert "fig7.png not written" in err and "table.txt not written" in err
    assert not (out / "fig7.png").exists() and not (out / "table.txt").exists()
    assert (out / "proposed_bands.json").exists() and len(rec.load_run(out)[1]) == 3
