"""The Mirage variant of a decoder: each fusable piece runs the fastest correct µGraph, or the
baseline's own torch code where no µGraph is valid, correct and faster.

``prepare(model, cache, saved_dir=...)`` does, for every piece of ``models.pieces.piece_kinds`` at
the cache's batch size:

1. load ``saved_mugraphs/models/<model>_<piece>_b<b>.json`` and keep the candidates whose input
   program is the kind's program at this model's shapes (a stale file is reported, not used);
2. compile every candidate (``mirage.runtime.compile``), all pieces together, and tune their
   launch configs together (``tune_quick``: a few configs per kernel, compiled in parallel);
3. check each candidate against the baseline piece (``TorchPieces``, the PyTorch model's code) on
   the layer-0 weights and cache and random activations; a wrong one is dropped however fast;
4. time the correct candidates and the baseline piece (rotating over the first layers' weights
   so a piece is not timed from L2) and keep the fastest: the baseline piece is a candidate too,
   so piece by piece the variant is never slower than the PyTorch model it replaces.

A µGraph candidate is wrapped to take the piece's own arguments (``MiragePieces.*_args`` say
what it feeds the µGraph), so both kinds of candidate are called, checked and timed alike.

The variant's weights: RMSNorm gains are folded into copies of the matrices after each norm
(rms_norm(x) * g @ W = rms_norm(x) @ (diag(g) W): the µGraphs' programs have no gain). Where
attention has no QK-norm, 1/sqrt(d) is folded into the RoPE tables of the query heads (the
µGraphs' softmax has no scale; the baseline attention then runs with scale 1). nGPT has no
gains and normalizes q inside its attention µGraph, so it needs neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mirage.ir import load
from mirage.workloads.models import KINDS
from models.decoder import Cache, Decoder, Rope, TorchPieces, Variant, relative_error
from models.pieces import piece_kinds, piece_shapes, saved_path

TORCH = "torch"  # the label of the baseline piece among a piece's candidates
POLICIES = ("fastest", "mugraph", "torch")
TUNING = ("quick", "full", "none")
PIECE_TOLERANCE = 1e-2  # max-norm relative error of a µGraph piece against the baseline piece
ROTATE_LAYERS = 4  # timing inputs rotate over this many layers' weights and caches


# --- weights ---------------------------------------------------------------------------------


@dataclass
class Folded:
    """The Mirage variant's weights: per layer, the model's own tensors plus ``m_*`` copies with
    the gains folded in; the folded head."""

    layers: list[dict]
    head: torch.Tensor | None


def fold(model: Decoder) -> Folded:
    cfg, weights = model.cfg, model.weights
    layers = []
    with torch.no_grad():
        for w in weights["layers"]:
            m = dict(w)  # the model's tensors, shared
            if cfg.ngpt:  # no gains
                m["m_w13"] = w["w13"]
            else:
                g = w["attn_norm"][:, None]
                m["m_wqkv"] = w["wqkv"] * g
                if cfg.lora_rank:
                    m["m_qkv_a"] = w["qkv_a"] * g
                m["m_w13"] = w["w13"] * w["mlp_norm"][:, None]
            layers.append(m)
        head = None if cfg.ngpt else weights["head"] * weights["final_norm"][:, None]
    return Folded(layers, head)


def mirage_rope(model: Decoder) -> Rope:
    """The variant's RoPE: with the query scale folded in unless q is normalized anyway."""
    cfg = model.cfg
    scale = None if cfg.qk_norm else cfg.head_dim ** -0.5
    return Rope.at(cfg, cfg.kv_len - 1, model.device, scale)


# --- the pieces --------------------------------------------------------------------------------

# piece -> the TorchPieces method it replaces (nGPT's update is its residual)
PIECE_METHOD = {"attn_in": "attn_in", "attend": "attend", "attn_out": "attn_out",
                "update": "residual", "mlp": "mlp", "head": "head"}


class MiragePieces(TorchPieces):
    """``TorchPieces`` with some pieces sent to ``chosen[piece]``, a callable with the piece's
    own signature (a wrapped µGraph). The ``*_args`` methods say what a µGraph of the piece's
    kind is fed: the kind's inputs, in order."""

    def __init__(self, cfg, head_w: torch.Tensor | None, attention_form: str = "rows"):
        super().__init__(cfg, attention_form)
        if not cfg.qk_norm:
            self.attn_scale = 1.0  # q arrives scaled by the variant's RoPE tables
        self.head_w = head_w
        self.chosen: dict[str, Callable] = {}

    # inputs of each kind, in the kind's order
    def attn_in_args(self, x, w):
        lora = (w["m_qkv_a"], w["qkv_b"]) if self.cfg.lora_rank else ()
        return (x, w["m_wqkv"], *lora)

    def attend_args(self, q, k_cache, v_cache):
        c = self.cfg
        heads = q.shape[0] * c.kv_heads
        # each KV head's group of query heads as its query rows (a copy only when b > 1: q is
        # a slice of the RoPE output)
        return (q.reshape(heads, c.group, c.head_dim), k_cache.view(heads, -1, c.head_dim),
                v_cache.view(heads, -1, c.head_dim))

    def attn_out_args(self, o, w):
        return (o, w["wo"], w["o_a"], w["o_b"])

    def residual_args(self, x, h, w, which):
        return (h, x, w[f"alpha_{which}"].expand(x.shape))  # a broadcast view, stride 0

    def mlp_args(self, x, w):
        f = self.cfg.ffn
        return (x, w["m_w13"][:, :f], w["m_w13"][:, f:])  # column views: strides are passed

    def head_args(self, x, final_norm, head):
        return (x, self.head_w)

    # the pieces: the chosen µGraph, else the baseline's code
    def _run(self, piece: str, *site):
        fn = self.chosen.get(piece)
        return fn(*site) if fn else self.baseline(piece)(*site)

    def attn_in(self, x, w):
        return self._run("attn_in", x, w)

    def attend(self, q, k_cache, v_cache):
        return self._run("attend", q, k_cache, v_cache)

    def attn_out(self, o, w):
        return self._run("attn_out", o, w)

    def residual(self, x, h, w, which: str):
        return self._run("update", x, h, w, which)

    def mlp(self, x, w):
        return self._run("mlp", x, w)

    def head(self, x, final_norm, head):
        return self._run("head", x, final_norm, head)

    def baseline(self, piece: str) -> Callable:
        """The PyTorch model's own code for ``piece`` (bound to this object)."""
        return getattr(super(), PIECE_METHOD[piece])

    def wrap(self, piece: str, graph_fn: Callable) -> Callable:
        """A compiled µGraph of ``piece``'s kind as a callable with the piece's signature."""
        args = getattr(self, f"{PIECE_METHOD[piece]}_args")
        if piece == "attend":  # (b * kv_heads, group, d) back to (b, heads * d)
            return lambda q, *rest: graph_fn(*args(q, *rest)).reshape(q.shape[0],
                                                                     self.cfg.q_cols)
        return lambda *site: graph_fn(*args(*site))


class MirageVariant(Variant):
    name = "mirage"

    def __init__(self, model: Decoder, cache: Cache, pieces: MiragePieces, folded: Folded,
                 choices: dict[str, Choice], rope: Rope):
        super().__init__(model, cache, pieces, rope)
        self.layer_weights = folded.layers
        self.choices = choices

    def detail(self) -> dict:
        return {piece: c.as_dict() for piece, c in self.choices.items()}


# --- choosing an implementation per piece -----------------------------------------------------


@dataclass
class Choice:
    """How one piece is computed, and why."""

    piece: str
    kind: str
    file: str
    chosen: str = TORCH  # "mugraph #<i>" or "torch"
    reason: str = ""
    candidates: int = 0
    timings_us: dict[str, float] = field(default_factory=dict)
    rel_err: dict[str, float | None] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ({}, "")}


def load_candidates(cfg, piece: str, kind: str, shapes: dict, b: int, saved_dir: Path,
                    choice: Choice) -> list[tuple[str, object]]:
    """(label, graph) of the saved candidates that compute ``kind`` at ``shapes``."""
    path = saved_path(saved_dir, cfg, piece, b)
    choice.file = str(path)
    if not path.exists():
        choice.reason = f"no saved µGraph ({path})"
        return []
    mf = load(path)
    program = KINDS[kind].program(shapes)
    if mf.program is not None and mf.program != program:
        choice.reason = f"{path}: stale (its program is not {kind} at this model's shapes)"
        return []
    want = program.input_types
    out = [(f"mugraph #{i}", g) for i, g in enumerate(mf.graphs) if g.input_types == want]
    choice.candidates = len(mf.graphs)
    if not out:
        choice.reason = f"{path}: no candidate takes the inputs {[str(t) for t in want]}"
    return out


def prepare(model: Decoder, cache: Cache, *, saved_dir: Path, folded: Folded | None = None,
            mode: str = "gpu", policy: str = "fastest", tune: str = "quick",
            timer: Callable | None = None, seed: int = 0,
            log: Callable[[str], None] = lambda s: None) -> MirageVariant:
    """The Mirage variant of ``model`` at the cache's batch size (see the module docstring).

    ``mode``: ``gpu`` or ``interpret`` (CPU tests). ``policy``: ``fastest`` (time, keep the
    fastest correct), ``mugraph`` (the first correct µGraph, no timing), ``torch`` (the
    baseline pieces only). ``timer(fn, input_sets) -> µs``, needed for ``fastest``.
    """
    from mirage.runtime import compile as compile_graph

    if policy not in POLICIES or tune not in TUNING:
        raise ValueError(f"policy {policy!r} / tune {tune!r}: one of {POLICIES} / {TUNING}")
    cfg, b = model.cfg, cache.batch
    folded = folded or fold(model)
    rope = mirage_rope(model)
    pieces = MiragePieces(cfg, folded.head, model.attention_form)
    kinds, shapes = piece_kinds(cfg), piece_shapes(cfg, b)
    choices = {p: Choice(p, kinds[p], "") for p in kinds}
    compiled: dict[str, list[tuple[str, object]]] = {}
    for piece, kind in kinds.items():
        graphs = load_candidates(cfg, piece, kind, shapes[piece], b, saved_dir, choices[piece])
        fns = []
        for label, g in graphs if policy != "torch" else []:
            try:
                fns.append((label, compile_graph(g, mode=mode, tune=tune == "full")))
            except Exception as e:  # a candidate the backend cannot lower is not a candidate
                choices[piece].rejected[label] = f"compile: {type(e).__name__}: {_line(e)}"
        compiled[piece] = fns
    if mode == "gpu" and tune == "quick":
        tune_quick([fn for fns in compiled.values() for _, fn in fns], log)
    sets = _input_sets(model, folded, cache, seed)
    for piece, kind in kinds.items():
        candidates = [(label, pieces.wrap(piece, fn)) for label, fn in compiled[piece]]
        fn = _choose(choices[piece], candidates, pieces.baseline(piece), sets[piece], policy,
                     timer)
        if fn is not None:
            pieces.chosen[piece] = fn
        c = choices[piece]
        times = ", ".join(f"{k} {v:.1f} us" for k, v in c.timings_us.items())
        log(f"    {piece} ({kind}): {c.chosen}" + (f" [{times}]" if times else "")
            + (f" ({c.reason})" if c.reason else ""))
    return MirageVariant(model, cache, pieces, folded, choices, rope)


def _choose(choice: Choice, candidates: list, baseline: Callable, input_sets: list,
            policy: str, timer: Callable | None) -> Callable | None:
    """The chosen µGraph callable, or None for the baseline piece."""
    with torch.no_grad():
        ref = baseline(*input_sets[0])
        good = []
        for label, fn in candidates:
            try:
                err = relative_error(fn(*input_sets[0]), ref)
            except Exception as e:
                choice.rejected[label] = f"raised {type(e).__name__}: {_line(e)}"
                continue
            choice.rel_err[label] = err if err != float("inf") else None
            if err <= PIECE_TOLERANCE:
                good.append((label, fn))
            else:
                choice.rejected[label] = f"wrong: rel_err {err:.3g} > {PIECE_TOLERANCE:g}"
        if not good:
            if policy != "torch" and not choice.reason:
                choice.reason = "no correct µGraph"
            return None
        if policy == "mugraph":
            choice.chosen = good[0][0]
            return good[0][1]
        if timer is None:
            raise ValueError("policy 'fastest' needs a timer")
        options = good + [(TORCH, baseline)]
        for label, fn in options:
            choice.timings_us[label] = round(float(timer(fn, input_sets)), 2)
    label, fn = min(options, key=lambda o: choice.timings_us[o[0]])
    choice.chosen = label
    if label == TORCH:
        choice.reason = "the baseline piece was faster"
        return None
    return fn


def _input_sets(model: Decoder, folded: Folded, cache: Cache, seed: int
                ) -> dict[str, list[tuple]]:
    """Per piece, call-site arguments on each of the first ``ROTATE_LAYERS`` layers' weights and
    caches, with random activations of the scale the model produces there (the head: one set,
    its matrix is far larger than L2)."""
    cfg, b, dev = model.cfg, cache.batch, cache.k[0].device
    gen = torch.Generator(device=dev).manual_seed(seed)

    def randn(*shape, std=1.0):
        return (torch.randn(shape, generator=gen, device=dev) * std).half()

    x = randn(b, cfg.hidden)
    unit_x = torch.nn.functional.rms_norm(x.float(), (cfg.hidden,)).half()
    # q as the variant's RoPE leaves it: scaled by 1/sqrt(d) unless attention normalizes it
    q = randn(b, cfg.heads, cfg.head_dim, std=1.0 if cfg.qk_norm else cfg.head_dim ** -0.5)
    o, h = randn(b, cfg.q_cols), randn(b, cfg.hidden)
    hidden = unit_x if cfg.ngpt else x  # nGPT's states are normalized
    sets: dict[str, list[tuple]] = {}
    for piece in piece_kinds(cfg):
        if piece == "head":
            sets[piece] = [(x, model.weights.get("final_norm"), model.weights["head"])]
            continue
        sets[piece] = []
        for i in range(min(ROTATE_LAYERS, cfg.layers)):
            w = folded.layers[i]
            sets[piece].append({
                "attn_in": (hidden, w),
                "attend": (q, cache.k[i], cache.v[i]),
                "attn_out": (o, w),
                "update": (unit_x, h, w, "attn"),
                "mlp": (hidden, w),
            }[piece])
    return sets


def tune_quick(graphs: list, log: Callable[[str], None] = lambda s: None) -> None:
    """Tune the launch configs of many compiled µGraphs at once: a few configs per kernel
    (``quick_configs``), all compiled in one parallel batch, then timed one kernel at a time
    (``mirage.runtime.tuning.pick``). The runtime's own tuning (``tune=True``) compiles every
    config of one graph at a time: too slow for dozens of graphs in one run."""
    from mirage.ir import Ref
    from mirage.runtime import tuning

    todo = []
    for cg in graphs:
        # one execution gives every kernel real operands of the right shapes (the runtime's
        # own tuner does the same)
        values = cg._execute(cg.random_inputs(), None)
        for i, launch in cg.launches.items():
            node = cg.graph.nodes[i]
            operands = [values[r] for r in node.args] + [values[Ref(i, k)]
                                                         for k in range(len(node.outputs))]
            todo.append((launch, operands, quick_configs(launch.spec)))
    tuning.precompile([lambda launch=launch, t=t, c=c: launch.warmup(t, c)
                       for launch, t, configs in todo for c in configs])
    for launch, t, configs in todo:
        launch.config, _ = tuning.pick(lambda cfg, launch=launch, t=t: launch(t, cfg), configs)
    log(f"    tuned {len(todo)} kernels ({sum(len(c) for *_, c in todo)} configs)")


def quick_configs(spec) -> list:
    """The heuristic config, then 2- and 8-warp alternatives (NOTES.md: GEMV-like loops liked
    2 warps; wide single-pass tiles like more)."""
    from mirage.runtime import tuning
    from mirage.runtime.tuning import Config

    first = tuning.heuristic(spec)
    if spec.forloop_range > 1:
        extra = [Config(2, 4), Config(4, 4), Config(8, 3)]
    else:
        extra = [Config(4, 1), Config(8, 1)]
    return [first] + [c for c in extra if c != first][:3]


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else ""
