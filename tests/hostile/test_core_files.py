"""Hostile µGraph files: garbage inside well-formed JSON at every level, absurd numbers, odd
names, and candidates that do not fit the loading target (marked, not fatal)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

import mirage as mi
from mirage.errors import InputError
from mirage.ir import A100, H100, MugraphFormatError, load, loads, save
from mirage.ir.serialize import dumps, graph_from_dict

ROOT = Path(__file__).resolve().parents[2]
N = None


def good_doc() -> dict:
    """A file with a program (two inputs, a matmul) and one graph-defined candidate."""
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(8, 16), name="X")
    w = g.new_input(dims=(16, 32), name="W")
    g.mark_output(g.matmul(x, w))
    program = g.kernel_graph()
    c = mi.new_kernel_graph()
    x = c.new_input(dims=(8, 16), name="X")
    w = c.new_input(dims=(16, 32), name="W")
    tb = mi.new_threadblock_graph((2, 1, 1), 2)
    tx = tb.new_input(x, (N, N, N), 1)
    tw = tb.new_input(w, (1, N, N), 0)
    tb.new_output(tb.forloop_accum(tb.matmul(tx, tw)), (1, N, N))
    (o,) = c.customized([x, w], tb)
    c.mark_output(o)
    return json.loads(dumps([c.kernel_graph()], program))


def test_good_doc_loads():
    f = loads(json.dumps(good_doc()))
    assert len(f.graphs) == 1 and f.program is not None and f.unfit == ()


def edit(path: str, value):
    """The good document with the field at ``path`` (dotted, [k] indices) set to ``value``."""
    doc = good_doc()
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    target = doc
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(doc)


CASES = [
    # top level
    ("format", "mirage", "format: expected 'mirage-mugraph', got str 'mirage'"),
    ("format", KeyError, "format: missing field"),
    ("version", "1", "version: unsupported version str '1'"),
    ("version", True, "version: unsupported version bool True"),
    ("version", 1.0, "version: unsupported version float 1.0"),
    ("target", 7, "target: expected a string, got int 7"),
    ("meta", [], "meta: expected an object, got list"),
    ("program", [], "program: expected an object, got list"),
    ("graphs", {}, "graphs: expected a list, got dict"),
    ("graphs", KeyError, "graphs: missing field"),
    # graph level
    ("graphs[0]", "g", "graphs[0]: expected an object, got str"),
    ("graphs[0].nodes", {}, "graphs[0].nodes: expected a list, got dict"),
    ("graphs[0].outputs", 3, "graphs[0].outputs: expected a list, got int"),
    ("graphs[0].outputs[0]", [True, 0], "graphs[0].outputs[0][0]: expected an int, got bool"),
    ("graphs[0].outputs[0]", [9, 0], "outputs[0]: bad graph outputs: output"),
    ("graphs[0].outputs[0]", [2], "graphs[0].outputs[0]: expected 2 entries, got 1"),
    # kernel nodes
    ("graphs[0].nodes[0]", [1], "graphs[0].nodes[0]: expected an object, got list"),
    ("graphs[0].nodes[0].op", 3, "graphs[0].nodes[0].op: expected a string, got int 3"),
    ("graphs[0].nodes[0].shape", "8x16", "graphs[0].nodes[0].shape: expected a list, got str"),
    ("graphs[0].nodes[0].shape[1]", 16.7,
     "graphs[0].nodes[0].shape[1]: expected an int, got float 16.7"),
    ("graphs[0].nodes[0].shape[1]", 16.0,
     "graphs[0].nodes[0].shape[1]: expected an int, got float 16.0"),
    ("graphs[0].nodes[0].shape[1]", "16", "nodes[0].shape[1]: expected an int, got str '16'"),
    ("graphs[0].nodes[0].shape[1]", None, "nodes[0].shape[1]: expected an int, got NoneType"),
    ("graphs[0].nodes[0].shape[1]", 0, "nodes[0].shape[1]: bad shape or dtype declaration: "
                                       "0 is below the minimum 1"),
    ("graphs[0].nodes[0].shape[1]", 2**100, "nodes[0].shape[1]: bad shape or dtype "
                                            "declaration: 1267650600228229401496703205376 "
                                            "exceeds the maximum"),
    ("graphs[0].nodes[0].shape", [2**30, 2**30, 8],
     "graphs[0].nodes[0].shape: bad shape or dtype declaration: shape"),
    ("graphs[0].nodes[0].shape", [], "nodes[0].shape: bad shape or dtype declaration: shape ()"),
    ("graphs[0].nodes[0].dtype", 16, "graphs[0].nodes[0].dtype: expected a string, got int"),
    ("graphs[0].nodes[0].dtype", "fp64", "graphs[0].nodes[0].dtype: bad shape or dtype "
                                         "declaration: unknown dtype str 'fp64'"),
    ("graphs[0].nodes[0].name", 1, "graphs[0].nodes[0].name: expected a string, got int 1"),
    ("graphs[0].nodes[0].name", "a\u0007", "graphs[0].nodes[0].name: bad tensor name: "
                                           "character 1 (0x7) is not printable"),
    ("graphs[0].nodes[0].name", "\ud800", "nodes[0].name: bad tensor name: character 0"),
    ("graphs[0].nodes[0].name", "n" * 200, "nodes[0].name: bad tensor name: 200 characters"),
    ("graphs[0].nodes[1].name", "X", "graphs[0].nodes: bad tensor name: two inputs are named"),
    ("graphs[0].nodes[2].args", "01", "graphs[0].nodes[2].args: expected a list, got str"),
    ("graphs[0].nodes[2].args[0]", ["0", 0], "nodes[2].args[0][0]: expected an int, got str"),
    ("graphs[0].nodes[2].args[0]", [5, 0], "nodes[2]: operand refers to a missing"),
    # block graphs
    ("graphs[0].nodes[2].block", [], "graphs[0].nodes[2].block: expected an object, got list"),
    ("graphs[0].nodes[2].block.grid", [2, 1], "nodes[2].block.grid: expected 3 entries, got 2"),
    ("graphs[0].nodes[2].block.grid[0]", 2.0,
     "graphs[0].nodes[2].block.grid[0]: expected an int, got float 2.0"),
    ("graphs[0].nodes[2].block.grid[0]", 0, "block.grid[0]: imap/fmap/omap names a missing "
                                            "or repeated dim: 0 is below the minimum 1"),
    ("graphs[0].nodes[2].block.forloop_range", "2",
     "graphs[0].nodes[2].block.forloop_range: expected an int, got str '2'"),
    ("graphs[0].nodes[2].block.forloop_range", 2**40, "block.forloop_range: imap/fmap/omap "
                                                      "names a missing or repeated dim"),
    ("graphs[0].nodes[2].block.nodes", {}, "nodes[2].block.nodes: expected a list, got dict"),
    ("graphs[0].nodes[2].block.nodes[0].imap", [N, N],
     "graphs[0].nodes[2].block.nodes[0].imap: expected 3 entries, got 2"),
    ("graphs[0].nodes[2].block.nodes[0].imap[0]", 0.5,
     "block.nodes[0].imap[0]: expected an int, got float 0.5"),
    ("graphs[0].nodes[2].block.nodes[0].fmap", 1.5,
     "block.nodes[0].fmap: expected an int, got float 1.5"),
    ("graphs[0].nodes[2].block.nodes[0].source", -1, "block.nodes[0]: operand refers to a "
                                                     "missing or later node: block input "
                                                     "source -1 missing"),
    ("graphs[0].nodes[2].block.nodes[4].omap[0]", True,
     "block.nodes[4].omap[0]: expected an int, got bool True"),
    ("graphs[0].nodes[2].block.nodes[2].attrs", [], "block.nodes[2].attrs: expected an object"),
    ("graphs[0].nodes[2].block.nodes[2].attrs", {"dim": 1.5},
     "block.nodes[2].attrs.dim: expected an int, got float 1.5"),
    ("graphs[0].nodes[2].block.nodes[2].op", "frobnicate", "block.nodes[2]: unknown op"),
    # the program, too
    ("program.nodes[0].shape[0]", float("nan"), "program.nodes[0].shape[0]: expected an int, "
                                                "got float nan"),
    ("program.nodes[0].shape[0]", float("inf"), "program.nodes[0].shape[0]: expected an int, "
                                                "got float inf"),
]


@pytest.mark.parametrize("path, value, message", CASES, ids=[f"{c[0]}={c[1]!r:.20}"
                                                              for c in CASES])
def test_garbage_values_name_the_field(path, value, message):
    with pytest.raises(MugraphFormatError) as e:
        loads(edit(path, value), "f.json")
    assert message in str(e.value)
    assert str(e.value).startswith("f.json: ")


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"format": "mirage-mugraph", "version": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"format": "mirage-mugraph", "version": 1e400, "graphs": []}',
     "unsupported version float inf"),
    ('{"format": "mirage-mugraph", "version": NaN, "graphs": []}',
     "unsupported version float nan"),
    ("[]", "<top>: expected an object, got list"),
    ("", "not valid JSON"),
])
def test_malformed_documents(text, message):
    with pytest.raises(MugraphFormatError, match=re.escape(message)):
        loads(text)


def test_non_text_is_refused():
    with pytest.raises(MugraphFormatError, match="expected text, got bytes"):
        loads(b"{}")


def test_unreadable_file(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MugraphFormatError, match="cannot read"):
        load(path)


def test_odd_names_round_trip(tmp_path):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(4, 8), name="x.1")
    y = g.new_input(dims=(4, 8), name="Вход ✓")
    g.mark_output(g.add(x, y))
    prog = g.kernel_graph()
    save(tmp_path / "f.json", [prog], prog)
    f = load(tmp_path / "f.json")
    assert [n.name for n in f.program.nodes[:2]] == ["x.1", "Вход ✓"]


def test_candidates_too_big_for_the_a100_are_marked_not_fatal():
    path = ROOT / "saved_mugraphs" / "qknorm_b1.json"
    h100 = load(path, H100)
    a100 = load(path, A100)
    assert len(h100.graphs) == 8 and h100.unfit == ()
    assert a100.program == h100.program
    assert len(a100.graphs) + len(a100.unfit) == 8 and a100.unfit
    index, reason = a100.unfit[0]
    assert index == 3 and "tiles exceed the per-block shared-memory limit" in reason
    assert "a100" in reason
    assert h100.graphs[index] not in a100.graphs


def test_default_target_is_resolved_at_load_time(monkeypatch):
    path = ROOT / "saved_mugraphs" / "qknorm_b1.json"
    monkeypatch.setenv("MIRAGE_TARGET", "a100")
    assert load(path).unfit
    monkeypatch.setenv("MIRAGE_TARGET", "h100")
    assert load(path).unfit == ()


def test_save_records_the_target(tmp_path, monkeypatch):
    doc = good_doc()
    g = graph_from_dict(doc["graphs"][0])
    save(tmp_path / "a.json", [g], target=A100)
    assert json.loads((tmp_path / "a.json").read_text())["target"] == "a100"
    assert load(tmp_path / "a.json").target == "a100"
    monkeypatch.setenv("MIRAGE_TARGET", "h100")
    save(tmp_path / "h.json", [g])
    assert load(tmp_path / "h.json").target == "h100"


def test_old_files_without_a_target_still_load():
    doc = good_doc()
    del doc["target"]
    f = loads(json.dumps(doc))
    assert f.target is None and len(f.graphs) == 1


def test_an_invalid_program_fails_the_file_even_if_only_smem():
    doc = good_doc()
    doc["program"] = copy.deepcopy(doc["graphs"][0])
    doc["program"]["nodes"][0]["shape"] = [8, 4096 * 8]
    doc["program"]["nodes"][1]["shape"] = [4096 * 8, 32]
    with pytest.raises(MugraphFormatError, match=r"program\.nodes\[2\]\.block: tiles exceed"):
        loads(json.dumps(doc), target=A100)


def test_format_error_is_an_input_error():
    assert issubclass(MugraphFormatError, InputError)


@pytest.mark.parametrize("graphs, program, where", [
    ([1], None, "graphs[0]"), (["g"], None, "graphs[0]"), ([], "p", "program"),
])
def test_saving_something_else_is_refused(tmp_path, graphs, program, where):
    with pytest.raises(InputError, match=re.escape(f"{where}: expected a KernelGraph")):
        save(tmp_path / "x.json", graphs, program)
    assert not (tmp_path / "x.json").exists()


# --- targets by name ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["h100", "H100", "a100"])
def test_every_entry_point_takes_a_target_by_name(name, tmp_path):
    g = mi.new_kernel_graph()
    x = g.new_input(dims=(4, 8), name="x")
    g.mark_output(g.exp(x))
    program = g.kernel_graph()
    path = tmp_path / "p.json"
    mi.save(path, [program], program=program, target=name)
    doc = mi.load(path, target=name)
    assert doc.target == name.lower() and mi.verify(program, doc.graphs[0], target=name)


@pytest.mark.parametrize("bad", ["v100", "", 100, object()])
def test_an_unknown_target_is_refused_by_name(bad, tmp_path):
    g = mi.new_kernel_graph()
    g.mark_output(g.exp(g.new_input(dims=(4, 8), name="x")))
    program = g.kernel_graph()
    path = tmp_path / "p.json"
    mi.save(path, [program], program=program)
    for call in (lambda: mi.load(path, target=bad), lambda: mi.verify(program, program,
                                                                       target=bad)):
        with pytest.raises(InputError, match="^target: expected a Target or one of a100, h100"):
            call()
