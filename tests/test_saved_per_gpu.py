"""µGraphs per GPU (issue 16, item 3), on the CPU.

* ``saved_mugraphs/a100/``: every file loads under the A100 target with no unfit candidate,
  says it was written for the A100, holds its input program, which is the workload's program for
  its case and batch; every candidate passes ``mirage.ir.check`` under the A100; each file's
  first candidate is verified against its program (``mirage.verify``, A100 target).
* The harness picks the set by the run's GPU (``saved_dir_for``), loads it under the run's
  target and skips (and reports) the candidates that do not fit.
* The A100 rehearsal (``fig7 --rehearse a100`` on another card, faked here) files its results
  under results/a100-rehearsal/, marks them, and ``verify`` lists it without judging bands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from expected_fixture import unmeasured_expected
from test_harness_measure import fake_timer

from mirage.api import new_kernel_graph
from mirage.cli import main as mirage_main
from mirage.ir import A100, H100, check, load, save
from mirage.semantics import FloatSemantics, evaluate
from mirage.verify import verify
from mirage.workloads import WORKLOADS, program, reference
from scripts import fig7
from scripts import verify as verify_script
from scripts.harness import mirage_side
from scripts.harness import records as rec
from scripts.harness.cases import CASES
from scripts.harness.measure import Context, Rejected, Settings
from scripts.harness.metadata import GpuInfo

REPO = Path(__file__).resolve().parent.parent
A100_DIR = REPO / "saved_mugraphs" / "a100"
# The A100's Figure 7 batch sizes (1, 8) and 16; every workload at each is searched
# (scripts/search_saved.py --target a100). Files the search has not produced would be named here.
A100_BATCHES = (1, 8, 16)
MISSING: frozenset[tuple[str, int]] = frozenset()
A100_FILES = sorted(A100_DIR.glob("*_b*.json"))


def _case_batch(path: Path) -> tuple[str, int]:
    m = re.fullmatch(r"(\w+?)_b(\d+)\.json", path.name)
    assert m, f"{path.name}: not <case>_b<b>.json"
    return m.group(1), int(m.group(2))


# --- the A100 set --------------------------------------------------------------------------------

def test_a100_set_covers_the_a100_batches():
    present = {_case_batch(p) for p in A100_FILES}
    wanted = {(c, b) for c in WORKLOADS for b in A100_BATCHES}
    assert wanted - MISSING <= present, f"missing: {sorted(wanted - MISSING - present)}"
    assert not present & MISSING, "MISSING names a file that exists: update it"


@pytest.mark.parametrize("path", A100_FILES, ids=[p.stem for p in A100_FILES])
def test_a100_file_loads_fits_and_holds_its_program(path):
    case, b = _case_batch(path)
    mf = load(path, A100)
    assert mf.unfit == (), f"{path.name}: unfit under the A100: {mf.unfit}"
    assert mf.target == "a100"
    assert mf.meta.get("case") == case and mf.meta.get("batch") == b
    assert mf.meta.get("config", {}).get("target") == "a100"
    assert "--target a100" in mf.meta.get("command", "")
    assert mf.program is not None and mf.program == program(case, b)
    assert mf.graphs
    for i, g in enumerate(mf.graphs):
        assert check(g, A100) == [], f"{path.name} graph {i} breaks an A100 rule"


# Verifying these takes ~17 s each on 2 cores (minutes when the cores are busy): in the slow
# tier (pytest -m slow), so that this file stays under a minute. Every other file's first
# candidate is verified here (0-7 s each).
SLOW_VERIFY = {"gqa_b16", "qknorm_b16"}
VERIFY_PARAMS = [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW_VERIFY
                              else []) for p in A100_FILES]


@pytest.mark.parametrize("path", VERIFY_PARAMS)
def test_a100_first_candidate_verifies(path):
    mf = load(path, A100)
    verdict = verify(mf.program, mf.graphs[0], target=A100)
    assert verdict, f"{path.name} graph 0: {verdict.reason}"


# --- which set a run uses ------------------------------------------------------------------------

def test_saved_dir_for_picks_the_cards_own_set(tmp_path, monkeypatch):
    root = tmp_path / "saved"
    (root / "a100").mkdir(parents=True)
    assert mirage_side.saved_dir_for("a100", root) == root  # an empty folder is no set
    save(root / "a100" / "ntrans_b1.json", [reference("ntrans", 1)],
         program=program("ntrans", 1), target=A100)
    assert mirage_side.saved_dir_for("a100", root) == root / "a100"
    assert mirage_side.saved_dir_for("A100", root) == root / "a100"
    for gpu in ("h100", "h200", None, "rtx4090", "../a100"):
        assert mirage_side.saved_dir_for(gpu, root) == root
    # This checkout: the A100 has its own set, the H100 and H200 the flat one.
    monkeypatch.chdir(REPO)
    if A100_FILES:
        assert mirage_side.saved_dir_for("a100") == Path("saved_mugraphs/a100")
    assert mirage_side.saved_dir_for("h100") == Path("saved_mugraphs")
    assert mirage_side.saved_dir_for("h200") == Path("saved_mugraphs")


def test_target_for_each_card():
    assert mirage_side.target_for("a100") is A100
    assert mirage_side.target_for("h100") is H100
    assert mirage_side.target_for("h200") is H100
    assert mirage_side.target_for("rtx4090") is H100


def _context(log=None):
    return Context("testgpu", "run-1", "abc", Settings(seed=7, device="cpu", samples=5),
                   fake_timer, lambda r: None, log or (lambda line: None), gpu_key="GPU-test")


def test_candidates_that_do_not_fit_the_target_are_skipped_and_reported(tmp_path):
    """The flat (H100) QKNorm b=1 file holds two candidates over the A100's shared memory: under
    the A100 target they are listed, never compiled; under the H100 all are compiled."""
    src = REPO / "saved_mugraphs" / "qknorm_b1.json"
    unfit = load(src, A100).unfit
    if not unfit:
        pytest.skip("saved_mugraphs/qknorm_b1.json has no candidate over the A100's limit")
    compiled, lines = [], []

    def refuse(graph):  # records what would be compiled; compiling fails (nothing is timed)
        compiled.append(graph.digest)
        raise RuntimeError("not compiled in this test")

    for target, skipped in (("a100", len(unfit)), ("h100", 0)):
        compiled.clear()
        with pytest.raises(Rejected) as info:
            mirage_side.prepare(_context(lines.append), CASES["qknorm"], 1, [],
                                saved_dir=src.parent, cache_root=tmp_path / "cache",
                                compile_graph=refuse, target=target)
        detail = info.value.detail
        assert detail["target"] == target
        assert len(detail.get("unfit", [])) == skipped
        total = len(load(src, H100).graphs)
        assert len(compiled) == total - skipped
    everything = {g.digest for g in load(src, H100).graphs}
    fitting = {g.digest for g in load(src, A100).graphs}
    assert everything - fitting  # the unfit ones exist, and were only compiled under the H100
    assert any("do not fit the a100 target" in line for line in lines)


# --- the A100 rehearsal on another card (faked) -------------------------------------------------



def walker_compiler(graph):
    """mirage.runtime.compile's stand-in: the float semantics walker on the CPU."""
    def fn(*xs):
        outs = evaluate(graph, [x.double().numpy() for x in xs], FloatSemantics(np.float64))
        return [torch.from_numpy(np.array(o)).to(xs[0].dtype) for o in outs]
    fn.fake_us = 4.0
    return fn


def wrong_ntrans(b: int = 1):
    g = new_kernel_graph()
    h, x, alpha = (g.new_input(s, "fp16", k) for k, s in CASES["ntrans"].shapes(b).items())
    g.mark_output(g.rms_norm(g.add(x, g.mul(alpha, g.sub(h, x)))))
    return g.kernel_graph()


H100_CARD = GpuInfo("NVIDIA H100 80GB HBM3", "h100", "GPU-fake", 0, None, (9, 0), 50 * 2**20,
                    "no NVML in tests")
A100_CARD = GpuInfo("NVIDIA A100-SXM4-80GB", "a100", "GPU-fake-a", 0, None, (8, 0),
                    40 * 2**20, "no NVML in tests")


@pytest.fixture(autouse=True)
def fixed_code(monkeypatch):
    """Others edit the tree while tests run: pin the code fingerprint."""
    from scripts.harness import metadata

    for module in (metadata, mirage_side, verify_script):
        monkeypatch.setattr(module, "code_fingerprint", lambda *a, **k: "pinned")


def rehearse(tmp_path, graphs=None, card=H100_CARD, saved=True, extra=()):
    root = tmp_path / "saved_mugraphs"
    if saved:
        save(root / "a100" / "ntrans_b1.json", graphs or [reference("ntrans", 1)],
             program=program("ntrans", 1), target=A100)
    return fig7.main(["--rehearse", "a100", "--cases", "ntrans", "--batches", "1",
                      "--baselines", "eager", "--device", "cpu", "--samples", "5",
                      "--results", str(tmp_path / "results"), "--cache",
                      str(tmp_path / "cache"), *extra],
                     detect=lambda: card, timer_loader=lambda n: (fake_timer, "fake"),
                     compile_graph=walker_compiler)


@pytest.fixture
def saved_root(tmp_path, monkeypatch):
    """fig7's default µGraph root, pointed at tmp_path/saved_mugraphs."""
    monkeypatch.setattr(fig7, "SAVED_ROOT", tmp_path / "saved_mugraphs")


def test_rehearsal_files_apart_marks_itself_and_verify_does_not_judge_it(
        tmp_path, saved_root, capsys):
    assert rehearse(tmp_path) == 0
    out = tmp_path / "results" / "a100-rehearsal"
    assert not (tmp_path / "results" / "a100").exists()
    meta, records = rec.load_run(out)
    assert meta["gpu"] == "a100-rehearsal" and meta["gpu_override"] is None
    assert meta["rehearsal"] == {"as": "a100", "on": "NVIDIA H100 80GB HBM3"}
    assert meta["target"] == "a100" and meta["plan"]["target"] == "a100"
    assert meta["saved_dir"] == str(tmp_path / "saved_mugraphs" / "a100")
    mirage = {r.implementation: r for r in records}["mirage"]
    assert mirage.status == rec.OK and mirage.detail["target"] == "a100"
    assert mirage.detail["file"].endswith("a100/ntrans_b1.json")
    banner = "REHEARSAL (A100 limits and µGraphs on NVIDIA H100 80GB HBM3)"
    assert (out / "table.txt").read_text().startswith(banner)
    assert banner in capsys.readouterr().err

    expected = unmeasured_expected(tmp_path / "expected")
    args = ["--results", str(tmp_path / "results"), "--expected", str(expected)]
    assert verify_script.main(args) == 0
    text = capsys.readouterr().out
    assert banner in text and "rehearsal: not judged against bands" in text
    assert "TO MEASURE" not in text and "NO BAND" not in text
    assert verify_script.main([*args, "--gpu", "a100"]) == 1  # results/a100/ is not there

    # A marker that does not match the card it ran on makes the run untrusted.
    meta_path = out / "metadata.json"
    doc = json.loads(meta_path.read_text())
    doc["rehearsal"]["on"] = "NVIDIA A100-SXM4-80GB"
    meta_path.write_text(json.dumps(doc))
    assert verify_script.main(args) == 1
    assert "rehearsal.on" in capsys.readouterr().err


def test_a_rehearsal_with_a_wrong_mirage_fails_verify(tmp_path, saved_root, capsys):
    assert rehearse(tmp_path, graphs=[wrong_ntrans()]) == 0
    expected = unmeasured_expected(tmp_path / "expected")
    assert verify_script.main(["--results", str(tmp_path / "results"), "--expected",
                               str(expected)]) == 1
    assert "rehearsal FAILED" in capsys.readouterr().err


def test_rehearsal_refusals(tmp_path, saved_root, capsys):
    assert rehearse(tmp_path, saved=False) == 2  # no A100 set to rehearse with
    assert "no A100 µGraph set" in capsys.readouterr().err
    assert rehearse(tmp_path, card=A100_CARD) == 2  # on an A100: the real run, not a rehearsal
    assert "not a rehearsal" in capsys.readouterr().err
    assert rehearse(tmp_path, extra=("--gpu", "a100", "--force-gpu")) == 2
    assert not (tmp_path / "results" / "a100-rehearsal").exists()
    assert not (tmp_path / "results" / "a100").exists()


def test_a_real_run_uses_the_cards_own_set(tmp_path, saved_root, monkeypatch):
    """fig7 on an A100 (faked) takes saved_mugraphs/a100/ and the A100 target; on an H100 the
    flat set and the H100 target."""
    root = tmp_path / "saved_mugraphs"
    save(root / "a100" / "ntrans_b1.json", [reference("ntrans", 1)],
         program=program("ntrans", 1), target=A100)
    save(root / "ntrans_b1.json", [reference("ntrans", 1)], program=program("ntrans", 1))
    for card, saved, target in ((A100_CARD, root / "a100", "a100"), (H100_CARD, root, "h100")):
        assert fig7.main(["--cases", "ntrans", "--batches", "1", "--baselines", "eager",
                          "--device", "cpu", "--samples", "5", "--results",
                          str(tmp_path / "results"), "--cache", str(tmp_path / "cache")],
                         detect=lambda card=card: card,
                         timer_loader=lambda n: (fake_timer, "fake"),
                         compile_graph=walker_compiler) == 0
        meta, records = rec.load_run(tmp_path / "results" / card.slug)
        assert meta["rehearsal"] is None and meta["target"] == target
        assert meta["saved_dir"] == str(saved)
        mirage = {r.implementation: r for r in records}["mirage"]
        assert mirage.status == rec.OK and mirage.detail["target"] == target


def test_search_saved_targets_and_folders(tmp_path):
    from scripts import search_saved

    assert search_saved.default_out("h100") == "saved_mugraphs"  # the flat H100 set, unmoved
    assert search_saved.default_out("a100") == "saved_mugraphs/a100"
    out = tmp_path / "lora_b1.json"
    code = mirage_main(["search", "--case", "lora", "--batch", "1", "--target", "a100",
                        "--workers", "1", "--max-block-ops", "3", "--keep", "1",
                        "--out", str(out)])
    # exit 0 with searched candidates, 1 with the program alone: either way the file is written
    assert code in (0, 1) and load(out, A100).target == "a100"  # and records its target
