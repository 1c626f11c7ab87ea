"""The search's answer: never empty (the program as written is always the last candidate), a
cache entry trusted only after a re-check, a report that says why nothing was found, and no hang
for a script without a main guard."""

import json
import subprocess
import sys
import textwrap

import pytest
from hostile_helpers import TINY_RMS, subprocess_env, tiny_program

import mirage as mi
import mirage.search.engine as engine
from mirage.ir import save
from mirage.search import SearchConfig, cache_key, code_fingerprint, search, search_cached
from mirage.search.cache import RECHECK
from mirage.verify import verify
from mirage.workloads import PROGRAMS

TINY = SearchConfig(max_block_ops=3, keep=2, num_workers=1, time_budget_s=60)


@pytest.fixture(scope="module")
def result():
    return search(tiny_program(), TINY, progress=False)


def test_the_program_is_the_last_candidate_and_searched_ones_are_separate(result):
    prog = tiny_program()
    assert len(result.searched) == 2 and result.report.verified == 2
    assert result.candidates == [*result.searched, prog]
    assert len(result.estimates_s) == 3 and all(e > 0 for e in result.estimates_s)
    assert "[Search] answer: 2 searched candidates + the input program as written" in \
        result.report.lines()


@pytest.mark.parametrize(("change", "why"), [
    ({"time_budget_s": 0}, "time budget before any task finished"),
    ({"max_block_ops": 1}, "no complete candidate within the limits (max_kernel_ops 5, "
                           "max_block_ops 1, max_customized 2)"),
], ids=["no time", "too few ops"])
def test_an_empty_search_answers_the_program_and_says_why(change, why):
    import dataclasses

    prog = tiny_program()
    found = search(prog, dataclasses.replace(TINY, **change), progress=False)
    assert found.candidates == [prog] and found.searched == []
    assert f"[Search] no searched candidate: {why}" in found.report.lines()
    assert found.report.lines()[-1].startswith("[Search] finished. Time elapsed: ")


def test_no_layout_class_is_reported(monkeypatch):
    monkeypatch.setattr(engine, "layouts_for", lambda *a, **k: [])
    found = search(tiny_program(), TINY, progress=False)
    assert found.candidates == [tiny_program()]
    assert found.report.why_none.startswith("no layout class: ")


def test_every_candidate_failing_verification_is_reported(monkeypatch):
    from mirage.verify import Verdict

    monkeypatch.setattr(engine, "verify", lambda *a, **k: Verdict(False, "planted"))
    found = search(tiny_program(), TINY, progress=False)
    n, tried = found.report.candidates, found.report.failed_verification
    assert n > 0 and 0 < tried <= n and found.candidates == [tiny_program()]
    assert found.report.why_none == (f"every complete candidate failed verification ({tried} "
                                     f"verified: the best body of each tiling, of {n})")


def test_superoptimize_without_a_gpu_never_returns_nothing(tmp_path):
    g = mi.new_kernel_graph()
    x = g.new_input((4, 32), name="X")
    w = g.new_input((32, 16), name="W")
    g.mark_output(g.matmul(g.rms_norm(x), w))
    found = g.superoptimize(max_block_ops=1, keep=2, cache_dir=str(tmp_path), profile=False)
    assert found == [g.kernel_graph()]


# --- the cache --------------------------------------------------------------------------------


def _entry(tmp_path):
    return tmp_path / f"{cache_key(tiny_program(), TINY)}.json"


def test_a_cache_hit_is_rechecked_and_returned(tmp_path, capsys, result):
    first = search_cached(tiny_program(), TINY, tmp_path)
    capsys.readouterr()
    again = search_cached(tiny_program(), TINY, tmp_path)
    assert again.report.stop_reason == "cached" and capsys.readouterr().err == ""
    assert again.candidates == first.candidates == result.candidates


@pytest.mark.parametrize("damage", ["truncated", "a wrong graph", "another program",
                                    "no fingerprint", "an invalid graph"])
def test_a_damaged_cache_entry_is_recomputed_with_one_warning(tmp_path, capsys, result, damage):
    prog, path = tiny_program(), _entry(tmp_path)
    meta = {"code": code_fingerprint()}
    if damage == "truncated":
        save(path, result.searched, program=prog, meta=meta)
        path.write_text(path.read_text()[:200])
    elif damage == "a wrong graph":  # same inputs and output, no norm: not equivalent
        g = mi.new_kernel_graph()
        g.mark_output(g.matmul(g.new_input((4, 32), name="X"), g.new_input((32, 16), name="W")))
        save(path, [g.kernel_graph()], program=prog, meta=meta)
    elif damage == "another program":
        other = PROGRAMS["rmsnorm"]({"X": (2, 32), "W": (32, 16)})
        save(path, [other], program=other, meta=meta)
    elif damage == "no fingerprint":
        save(path, result.searched, program=prog)
    else:
        save(path, result.searched, program=prog, meta=meta)
        doc = json.loads(path.read_text())
        doc["graphs"][0]["nodes"][2]["block"]["grid"] = [3, 1, 1]  # 3 does not divide 4
        path.write_text(json.dumps(doc))
    found = search_cached(prog, TINY, tmp_path)
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: search cache entry {path} "
                                                          f"not trusted (")
    assert found.report.stop_reason == "exhausted"
    assert found.candidates == result.candidates
    assert all(verify(prog, g) for g in found.candidates)
    assert search_cached(prog, TINY, tmp_path).report.stop_reason == "cached"  # rewritten


def test_the_recheck_is_one_finite_field_trial_with_its_own_seed():
    assert (RECHECK.min_trials, RECHECK.max_trials, RECHECK.float_check) == (1, 1, False)


def test_the_cache_key_follows_the_code_fingerprint(monkeypatch):
    import mirage.search.checkpoint as ckpt

    before = cache_key(tiny_program(), TINY)
    assert len(code_fingerprint()) == 24
    monkeypatch.setattr(ckpt, "code_fingerprint", lambda: "f" * 24)
    assert cache_key(tiny_program(), TINY) != before
    assert not hasattr(engine, "CODE_VERSION")


def test_the_time_budget_and_workers_do_not_change_the_cache_key():
    import dataclasses

    other = dataclasses.replace(TINY, time_budget_s=5, num_workers=3)
    assert cache_key(tiny_program(), other) == cache_key(tiny_program(), TINY)


# --- no main guard ----------------------------------------------------------------------------

SCRIPT = """\
from mirage.search import SearchConfig, search
from mirage.workloads import PROGRAMS

def run():
    prog = PROGRAMS["rmsnorm"]({shapes})
    found = search(prog, SearchConfig(max_block_ops=3, keep=2, num_workers=2),
                   progress=False)
    print("candidates", len(found.candidates))

{call}
"""


@pytest.mark.parametrize("guarded", [False, True], ids=["no main guard", "main guard"])
def test_a_script_with_workers_never_hangs(tmp_path, guarded):
    call = 'if __name__ == "__main__":\n    run()' if guarded else "run()"
    path = tmp_path / "script.py"
    path.write_text(SCRIPT.format(shapes=TINY_RMS, call=call))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "candidates 3"
    warned = [x for x in done.stderr.splitlines() if x.startswith("warning:")]
    if guarded:
        assert warned == []
    else:
        assert warned == ["warning: num_workers=2 ignored, searching in this process: put the "
                          "code that calls the search under `if __name__ == '__main__':` "
                          "(spawned worker processes re-run the script)"]


def test_superoptimize_in_a_script_without_a_main_guard_returns(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(f"""\
        import mirage as mi
        g = mi.new_kernel_graph()
        x = g.new_input((4, 32), name="X")
        w = g.new_input((32, 16), name="W")
        g.mark_output(g.matmul(g.rms_norm(x), w))
        found = g.superoptimize(max_block_ops=3, keep=1, num_workers=2,
                                cache_dir={str(tmp_path)!r}, profile=False)
        print(len(found))
        """))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr
    assert "if __name__ == '__main__':" in done.stderr


def test_the_command_line_with_workers_needs_no_guard_of_its_own(tmp_path):
    prog = tmp_path / "prog.json"
    save(prog, [tiny_program()])
    done = subprocess.run([sys.executable, "-m", "mirage", "search", "--program", str(prog),
                           "--out", str(tmp_path / "out.json"), "--workers", "2",
                           "--max-block-ops", "3", "--keep", "1"], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("source", "line", "guarded"), [
    ("run()\n", 1, False),
    ("if __name__ == '__main__':\n    run()\n", 2, True),
    ("if '__main__' == __name__:\n    x = 1\n    run()\n", 3, True),
    ("if __name__ == '__main__':\n    pass\nrun()\n", 3, False),
    ("if __name__ != '__main__':\n    pass\nelse:\n    run()\n", 4, False),
], ids=["bare call", "guarded", "reversed test", "after the guard", "in the else"])
def test_the_guard_is_found_in_the_source(tmp_path, source, line, guarded):
    from mirage.search.workers import _guarded_line

    path = tmp_path / "script.py"
    path.write_text(source)
    assert _guarded_line(str(path), line) is guarded
