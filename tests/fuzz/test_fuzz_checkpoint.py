"""Fuzzing the search checkpoint reader and the command line's argument parsing (issue 15):
random JSON, mutated real checkpoints (a value replaced, a key dropped, the text cut short or a
byte flipped) and random argument lists never raise anything but a clean refusal
(``CheckpointError`` / ``InputError``), and whatever the reader accepts is a checkpoint of this
search. Bounded: a few seconds on 2 cores."""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mirage.search.checkpoint as ckpt
import mirage.search.engine as engine
from mirage.cli import build_parser
from mirage.errors import InputError
from mirage.ir import TARGETS
from mirage.search import SearchConfig, search
from mirage.workloads import PROGRAMS

CONFIG = SearchConfig(max_block_ops=3, keep=1, num_workers=1, time_budget_s=60)
PROGRAM = PROGRAMS["rmsnorm"]({"X": (4, 32), "W": (32, 16)})
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.cache
def _real() -> tuple[str, frozenset]:
    """A real checkpoint of a tiny search (its text) and the task names of that search."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.ckpt"
        search(PROGRAM, CONFIG, checkpoint=path, progress=False)
        text = path.read_text()
    engine._init_worker(engine._program_json(PROGRAM), CONFIG, time.monotonic() + 60)
    return text, frozenset(engine._tasks(engine._WORKER["classes"]))


def _read(text: str | bytes):
    """``ckpt.read`` of ``text``: (done, found), or None for a clean refusal."""
    _, tasks = _real()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.ckpt"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "replace"))
        try:
            done, found = ckpt.read(path, PROGRAM, CONFIG, TARGETS["h100"], set(tasks))
        except ckpt.CheckpointError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
            return None
    assert set(done) <= tasks and set(found) == set(done)
    return done, found


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@FUZZ
@given(JSON)
def test_random_json_is_refused_cleanly(value):
    assert _read(json.dumps(value)) is None


@FUZZ
@given(st.data())
def test_a_mutated_checkpoint_is_refused_or_read_cleanly(data):
    doc = json.loads(_real()[0])
    node, trail = doc, []
    depth = data.draw(st.integers(min_value=0, max_value=12))  # down to a block node's fields
    while isinstance(node, (dict, list)) and node and len(trail) < depth:
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                        else range(len(node))))
        trail.append((node, key))
        node = node[key]
    if trail:
        parent, key = trail[-1]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(JSON)
    _read(json.dumps(doc))


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_a_cut_or_flipped_checkpoint_is_refused_or_read_cleanly(cut, byte):
    raw = bytearray(_real()[0].encode())
    position = cut % len(raw)
    flipped = bytes(raw[:position]) + bytes([byte]) + bytes(raw[position + 1:])
    _read(flipped)
    assert _read(bytes(raw[:position])) is None  # a cut checkpoint is never read


def test_the_real_checkpoint_reads_back():
    done, found = _read(_real()[0])
    assert done and sum(len(g) for g in found.values()) > 10


FLAGS = ["search", "check", "--case", "--program", "--batch", "--out", "--checkpoint",
         "--workers", "--time-budget", "--max-block-ops", "--max-kernel-ops", "--keep",
         "--target", "--no-pruning", "--restart", "--force", "--no-verify", "--no-program-ok",
         "rmsnorm", "h100", "0", "-1", "1", "nan", "inf", "1e309", "x.json", "", "--", "-"]


@FUZZ
@given(st.lists(st.sampled_from(FLAGS) | st.text(max_size=6), max_size=8))
def test_random_arguments_parse_or_are_refused_cleanly(argv):
    try:
        args = build_parser().parse_args(argv)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert args.command in ("search", "check")
    if args.command == "search":
        assert args.batch >= 1 and args.workers >= 1 and args.keep >= 1
        assert 0 <= args.time_budget < float("inf")
