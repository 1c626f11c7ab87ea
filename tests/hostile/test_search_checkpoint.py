"""Checkpoints that must not be trusted, resumed wrongly or silently replaced; Ctrl-C that must
end with one line and a checkpoint holding every finished task."""

import json

import pytest
from hostile_helpers import error_line, run_cli, search_argv

import mirage.search.engine as engine
from mirage.ir import load


def _graph_of(doc):
    return next(e["graphs"][0] for e in doc["done"].values() if e["graphs"])


def _mutations(doc):
    """name -> (checkpoint text, what the error line must say)."""
    text = json.dumps(doc)
    some = sorted(doc["done"])[0]

    def edited(change):
        d = json.loads(text)
        change(d)
        return json.dumps(d)

    bad_graph = json.loads(json.dumps(_graph_of(doc)))
    bad_graph["nodes"][-1]["op"] = "frobnicate"
    return {
        "truncated": (text[: len(text) // 2], "damaged checkpoint (not valid JSON"),
        "empty": ("", "damaged checkpoint (not valid JSON"),
        "a JSON list": ("[]", "not a search checkpoint (a JSON list, not an object)"),
        "a JSON string": ('"checkpoint"', "not a search checkpoint (a JSON str"),
        "foreign object": ('{"hello": 1}', "not a search checkpoint (format is 'None'"),
        "a µGraph file": ('{"format": "mirage-mugraph", "version": 1, "graphs": []}',
                          "not a search checkpoint (format is 'mirage-mugraph'"),
        "another program": (edited(lambda d: d.update(program="0" * 64)),
                            "checkpoint of another program (digest 000000000000"),
        "settings not an object": (edited(lambda d: d.update(settings=[])),
                                   "damaged checkpoint: 'settings' is not an object"),
        "done not an object": (edited(lambda d: d.update(done=[])),
                               "damaged checkpoint: done: not an object"),
        "unknown task": (edited(lambda d: d["done"].update({"99.9": d["done"][some]})),
                         "damaged checkpoint: done['99.9']: not a task of this search"),
        "no graphs": (edited(lambda d: d["done"][some].pop("graphs")),
                      f"damaged checkpoint: done['{some}']: no list 'graphs'"),
        "graphs a string": (edited(lambda d: d["done"][some].update(graphs="g")),
                            f"damaged checkpoint: done['{some}']: no list 'graphs'"),
        "explored a string": (edited(lambda d: d["done"][some]["stats"].update(explored="9")),
                              f"damaged checkpoint: done['{some}'].stats: not"),
        "negative count": (edited(lambda d: d["done"][some]["stats"]["rejected"].update(x=-1)),
                           f"damaged checkpoint: done['{some}'].stats: not"),
        "a graph with an unknown op": (
            edited(lambda d: d["done"][some].update(graphs=[bad_graph])),
            f"damaged checkpoint: done['{some}'].graphs[0]: graph.nodes["),
        "a graph that is a number": (edited(lambda d: d["done"][some].update(graphs=[3])),
                                     f"damaged checkpoint: done['{some}'].graphs[0]: graph: "),
    }


MUTATIONS = ["truncated", "empty", "a JSON list", "a JSON string", "foreign object",
             "a µGraph file", "another program", "settings not an object", "done not an object",
             "unknown task", "no graphs", "graphs a string", "explored a string",
             "negative count", "a graph with an unknown op", "a graph that is a number"]


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_damaged_or_foreign_checkpoint_is_refused_and_kept(work, capsys, name):
    text, says = _mutations(work["doc"])[name]
    work["checkpoint"].write_text(text)
    out_before = work["out"].read_bytes()
    rc, out, err = run_cli(capsys, *search_argv(work))
    line = error_line(err)
    assert rc == 2 and out == ""
    assert line.startswith(f"error: {work['checkpoint']}: ") and says in line, line
    assert work["checkpoint"].read_text() == text  # never replaced
    assert work["out"].read_bytes() == out_before
    assert not work["checkpoint"].with_name(work["checkpoint"].name + ".bak").exists()


def test_undecodable_bytes_are_refused(work, capsys):
    work["checkpoint"].write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = run_cli(capsys, *search_argv(work))
    assert rc == 2
    assert error_line(err).startswith(f"error: {work['checkpoint']}: cannot read the checkpoint")
    assert work["checkpoint"].read_bytes() == b"\xff\xfe\x00garbage"


@pytest.mark.parametrize(("extra", "says"), [
    (["--max-block-ops", "5"], ["max_block_ops 3 -> 5"]),
    (["--max-kernel-ops", "3", "--no-pruning"], ["max_kernel_ops 5 -> 3",
                                                 "use_pruning True -> False"]),
    (["--target", "a100"], ["target 'h100' -> 'a100'"]),
], ids=["block ops", "kernel ops and pruning", "target"])
def test_a_resume_with_other_settings_names_each_difference(work, capsys, extra, says):
    before = work["checkpoint"].read_bytes()
    rc, _, err = run_cli(capsys, *search_argv(work), *extra)
    line = error_line(err)
    assert rc == 2 and "checkpoint of other settings" in line and "--restart" in line
    assert all(s in line for s in says), line
    assert work["checkpoint"].read_bytes() == before


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--time-budget", "30"], ["--keep", "3"]],
                         ids=["workers", "time budget", "keep"])
def test_settings_that_do_not_change_the_tasks_resume(work, capsys, extra):
    rc, out, err = run_cli(capsys, *search_argv(work), *extra)
    assert rc == 0, err
    done = len(work["doc"]["done"])
    assert f"{done}/{done} searched ({done} from checkpoint)" in out


@pytest.mark.parametrize("content", ["{", None], ids=["damaged", "other settings"])
def test_restart_starts_over_and_keeps_the_old_checkpoint(work, capsys, content):
    if content is not None:
        work["checkpoint"].write_text(content)
    before = work["checkpoint"].read_bytes()
    rc, out, err = run_cli(capsys, *search_argv(work), "--restart", "--max-block-ops", "2")
    assert rc in (0, 1) and "(0 from checkpoint)" in out and "Traceback" not in err
    bak = work["checkpoint"].with_name(work["checkpoint"].name + ".bak")
    assert bak.read_bytes() == before
    assert json.loads(work["checkpoint"].read_text())["settings"]["max_block_ops"] == 2


@pytest.mark.parametrize("change", ["old format", "other code"])
def test_a_checkpoint_of_other_code_is_set_aside_with_a_warning(work, capsys, change):
    doc = work["doc"]
    doc = {"key": doc["key"], "done": doc["done"]} if change == "old format" else {
        **doc, "code": "0" * 24}
    work["checkpoint"].write_text(json.dumps(doc))
    before = work["checkpoint"].read_bytes()
    rc, out, err = run_cli(capsys, *search_argv(work))
    assert rc == 0 and "(0 from checkpoint)" in out
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "starting over; the old file is kept as" in warnings[0]
    assert work["checkpoint"].with_name(work["checkpoint"].name + ".bak").read_bytes() == before


def _interrupt_after(monkeypatch, finished_tasks):
    real, calls = engine._run_task, []

    def runner(task):
        if len(calls) == finished_tasks:
            raise KeyboardInterrupt
        calls.append(task)
        return real(task)

    monkeypatch.setattr(engine, "_run_task", runner)
    return calls


def test_ctrl_c_keeps_every_finished_task_and_resumes(work, finished, capsys, monkeypatch):
    work["checkpoint"].unlink()
    work["out"].unlink()
    calls = _interrupt_after(monkeypatch, 3)
    rc, out, err = run_cli(capsys, *search_argv(work))
    assert rc == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted: checkpoint kept at "
                                            f"{work['checkpoint']}, resume with the same "
                                            f"command")
    assert [x for x in err.splitlines() if x.startswith(("interrupted", "error"))] == [
        err.strip().splitlines()[-1]]
    assert sorted(json.loads(work["checkpoint"].read_text())["done"]) == sorted(calls)
    assert not work["out"].exists()
    monkeypatch.undo()
    rc, out, _ = run_cli(capsys, *search_argv(work))
    assert rc == 0 and "(3 from checkpoint)" in out
    resumed, fresh = load(work["out"]), load(finished["out"])
    assert [g.digest for g in resumed.graphs] == [g.digest for g in fresh.graphs]
    assert resumed.graphs[-1] == resumed.program


def test_ctrl_c_without_a_checkpoint_says_so(work, capsys, monkeypatch):
    _interrupt_after(monkeypatch, 0)
    argv = [a for a in search_argv(work) if a != work["checkpoint"] and a != "--checkpoint"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 130
    assert err.strip().splitlines()[-1] == ("interrupted: no checkpoint (use --checkpoint to "
                                            "make a search resumable)")


def test_ctrl_c_in_a_pool_worker_ends_the_search(work, capsys, monkeypatch):
    import multiprocessing

    work["checkpoint"].unlink()
    monkeypatch.setattr(engine, "search_context", lambda: multiprocessing.get_context("fork"))
    real = engine._run_task

    def runner(task):
        if task == "0.2":
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(engine, "_run_task", runner)
    argv = [*search_argv(work), "--workers", "2"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: ")
    if work["checkpoint"].exists():
        assert "0.2" not in json.loads(work["checkpoint"].read_text())["done"]


def test_ctrl_c_in_the_driver_keeps_the_last_written_checkpoint(work, capsys, monkeypatch):
    import mirage.search.checkpoint as ckpt

    work["checkpoint"].unlink()
    real, writes = ckpt.dumps, []

    def dumps(*args):
        if len(writes) == 2:
            raise KeyboardInterrupt  # the driver, between two tasks
        writes.append(1)
        return real(*args)

    monkeypatch.setattr(ckpt, "dumps", dumps)
    rc, _, err = run_cli(capsys, *search_argv(work))
    assert rc == 130 and err.strip().splitlines()[-1].startswith("interrupted: checkpoint kept")
    assert len(json.loads(work["checkpoint"].read_text())["done"]) == 2
