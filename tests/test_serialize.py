"""The µGraph file format: round trips, one clear error for every malformed file."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirage.ir import MugraphFormatError, check, load, loads, save
from mirage.ir.serialize import dumps
from mirage.workloads import PROGRAMS, REFERENCES, WORKLOADS, program, reference

SMALL_RMS = {"X": (4, 64), "W": (64, 64)}


def _doc():
    prog = PROGRAMS["rmsnorm"](SMALL_RMS)
    ref = REFERENCES["rmsnorm"](SMALL_RMS, tile_n=16, tile_k=16)
    return json.loads(dumps([ref, prog], program=prog, meta={"case": "rmsnorm"}))


@pytest.mark.parametrize("case", WORKLOADS)
def test_round_trip_keeps_the_structural_hash(case, tmp_path):
    prog, ref = program(case, 1), reference(case, 1)
    path = tmp_path / f"{case}.json"
    save(path, [ref, prog], program=prog, meta={"case": case})
    doc = load(path)
    assert doc.graphs[0].digest == ref.digest
    assert doc.graphs[1].digest == prog.digest
    assert doc.program.digest == prog.digest and doc.meta == {"case": case}


def _error(text: str) -> MugraphFormatError:
    with pytest.raises(MugraphFormatError) as info:
        loads(text, "bad.json")
    assert str(info.value).startswith("bad.json: ")
    return info.value


def _mutated(edit) -> str:
    doc = _doc()
    edit(doc)
    return json.dumps(doc)


def test_bad_json():
    assert "not valid JSON" in _error("{nope").message


def test_wrong_version_and_format():
    assert _error(_mutated(lambda d: d.update(version=99))).field == "version"
    assert _error(_mutated(lambda d: d.update(format="other"))).field == "format"


def test_unknown_op_names_the_node():
    def edit(d):
        d["graphs"][1]["nodes"][2]["op"] = "frobnicate"

    err = _error(_mutated(edit))
    assert err.field == "graphs[1].nodes[2]" and "unknown op" in err.message


def test_wrong_arity():
    def edit(d):
        d["graphs"][1]["nodes"][3]["args"].append([0, 0])  # matmul with three operands

    err = _error(_mutated(edit))
    assert err.field == "graphs[1].nodes[3]" and "operands" in err.message


def test_shapes_that_do_not_match():
    def edit(d):
        d["graphs"][1]["nodes"][1]["shape"] = [32, 64]  # W no longer fits X's hidden dim

    err = _error(_mutated(edit))
    assert err.field == "graphs[1].nodes[3]" and "shape mismatch" in err.message


def test_missing_field():
    def edit(d):
        del d["graphs"][0]["nodes"][2]["block"]["forloop_range"]

    err = _error(_mutated(edit))
    assert err.field == "graphs[0].nodes[2].block.forloop_range" and err.message == "missing field"


def test_uneven_split_in_a_block_graph_names_the_block_node():
    def edit(d):
        d["graphs"][0]["nodes"][2]["block"]["forloop_range"] = 5

    err = _error(_mutated(edit))
    assert err.field.startswith("graphs[0].nodes[2].block.nodes[") and "uneven" in err.message


def test_unreadable_file(tmp_path):
    with pytest.raises(MugraphFormatError, match="cannot read"):
        load(tmp_path / "missing.json")


# --- property: any mutation either loads to valid graphs or raises the one error -------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=5,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


BASE = _doc()
PATHS = [p for p in _paths(BASE) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), st.sampled_from(["replace", "delete", "small_int", "duplicate"]),
       json_values, st.integers(-2, 6))
def test_mutated_files_load_or_raise_the_one_error(path, how, value, small):
    doc = copy.deepcopy(BASE)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "small_int":
        parent[last] = small
    elif how == "delete":
        del parent[last]
    else:
        if isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:
            parent[last] = [parent[last], parent[last]]
    try:
        loaded = loads(json.dumps(doc), "mutant.json")
    except MugraphFormatError as e:
        assert e.file == "mutant.json"
        return
    for g in loaded.graphs:
        assert check(g) == []


def test_graph_from_dict_inverts_graph_to_dict_and_checks():
    from mirage.ir import H100
    from mirage.ir.serialize import graph_from_dict, graph_to_dict

    g = reference("rmsnorm", 16)
    assert graph_from_dict(graph_to_dict(g), H100) == g
    broken = graph_to_dict(g)
    broken["outputs"] = [[99, 0]]
    with pytest.raises(MugraphFormatError, match="graph.outputs"):
        graph_from_dict(broken, H100, "row 3")
