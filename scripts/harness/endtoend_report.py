"""Figure 11 from records: speedups against PyTorch, the text table, the figure and the checks.

Records of a Figure 11 run (``scripts/fig11.py``): ``case`` is the model (the whole decode step)
or ``<model>/layer`` (layer 0 timed alone: the per-layer figure the artifact reported);
implementations are ``pytorch`` (eager ops under a CUDA graph: the reference, as the paper's
"against PyTorch"), ``torch.compile`` and ``mirage``. Speedups are PyTorch / Mirage (the figure's
bars) and PyTorch / torch.compile beside it. Reads records; measures nothing.
"""

from __future__ import annotations

import io

from scripts.harness import checker
from scripts.harness import records as rec
from scripts.harness.analysis import MISSING, Speedup
from scripts.harness.records import Record

REFERENCE, COMPILED, MIRAGE = "pytorch", "torch.compile", "mirage"
IMPLEMENTATIONS = (REFERENCE, COMPILED, MIRAGE)
LAYER = "/layer"
BANDS_FILE = "fig11_bands.json"
FIGURE = "fig11"
STEP_TOLERANCE = 3e-2  # logits after every layer: fp16 rounding differences accumulate
LAYER_TOLERANCE = 1e-2
# The targets (not the paper's): no model slower, LLaMA-3-8B at b = 1 at least 1.1x.
TARGET_DEFAULT = 1.0
TARGETS = {("llama3-8b", 1): 1.1}
SHORT = {rec.NOT_AVAILABLE: "skipped", rec.WRONG: "WRONG", rec.ERROR: "error"}


def model_of(case: str) -> str:
    return case[:-len(LAYER)] if case.endswith(LAYER) else case


def is_layer(case: str) -> bool:
    return case.endswith(LAYER)


def target(case: str, b: int) -> float | None:
    """The issue's minimum speedup for a decode step (None for the per-layer rows)."""
    return None if is_layer(case) else TARGETS.get((case, b), TARGET_DEFAULT)


def _order(records: list[Record]) -> list[str]:
    models = []
    for r in records:
        if model_of(r.case) not in models:
            models.append(model_of(r.case))
    return models


def by_key(records: list[Record]) -> dict[tuple[str, int, str], Record]:
    return {(r.case, r.batch, r.implementation): r for r in records}


def speedup(records: list[Record], case: str, b: int, impl: str = MIRAGE) -> Speedup:
    """``impl`` against PyTorch at (case, b), as ``analysis.Speedup`` (so ``checker`` reads it)."""
    keyed = by_key(records)
    ref, mine = keyed.get((case, b, REFERENCE)), keyed.get((case, b, impl))
    ref_ok = ref is not None and ref.ok
    return Speedup(case, b, REFERENCE if ref_ok else None, ref.median_us if ref_ok else None,
                   mine.status if mine else MISSING,
                   mine.median_us if mine is not None and mine.ok else None)


def speedups(records: list[Record], impl: str = MIRAGE, layer: bool = False
             ) -> dict[tuple[str, int], Speedup]:
    """Per (case, b) of the step rows (or the layer rows): ``impl`` against PyTorch."""
    keys = dict.fromkeys((r.case, r.batch) for r in records if is_layer(r.case) == layer)
    order = _order(records)
    keys = sorted(keys, key=lambda k: (order.index(model_of(k[0])), k[1]))
    return {(c, b): speedup(records, c, b, impl) for c, b in keys}


def _ratio(s: Speedup) -> str:
    if s.speedup is not None:
        return f"{s.speedup:.2f}x"
    return "-" if s.mirage_status == MISSING else SHORT.get(s.mirage_status, s.mirage_status)


def _cell(r: Record | None, scale: float, digits: int) -> str:
    if r is None:
        return ""
    return f"{r.median_us / scale:.{digits}f}" if r.ok else SHORT[r.status]


def table(meta: dict, records: list[Record]) -> str:
    from tabulate import tabulate  # here: a machine without it still publishes its records

    keyed = by_key(records)
    rows = []
    for (case, b), s in speedups(records).items():
        layer = case + LAYER
        comp = speedup(records, case, b, COMPILED)
        vs_compile = (f"{keyed[(case, b, COMPILED)].median_us / s.mirage_us:.2f}x"
                      if s.mirage_us and comp.speedup else "-")
        rows.append([case, b,
                     *[_cell(keyed.get((case, b, n)), 1000.0, 2) for n in IMPLEMENTATIONS],
                     _ratio(s), _ratio(comp), vs_compile,
                     *[_cell(keyed.get((layer, b, n)), 1.0, 1) for n in IMPLEMENTATIONS],
                     _ratio(speedup(records, layer, b))])
    gpu = meta.get("gpu_info", {}).get("name", meta.get("gpu", "?"))
    plan = meta.get("plan", {})
    lines = [
        f"Figure 11 reproduction (end-to-end decode) on {gpu}, run {meta.get('run_id')}",
        f"commit {meta.get('commit')}, started {meta.get('started')}; timing: "
        + ", ".join(sorted({r.method for r in records if r.method})),
        f"one decode step: 1 new token per sequence, KV cache of {plan.get('kv_len', 4096)} "
        "tokens per sequence (the new K/V written in place, attention over all entries), random "
        "fp16 weights; step in ms, one layer (layer 0 alone) in us; speedup = PyTorch / Mirage.",
        "pytorch: eager ops with SDPA attention under a CUDA graph; torch.compile: Inductor "
        f"({plan.get('compile_mode', 'default')}) under a CUDA graph; mirage: fusable pieces as "
        "µGraphs (or the torch op where none was correct and faster).",
        f"checks: every variant's logits and layer-0 output against pytorch's, max-norm relative "
        f"error <= {plan.get('step_tolerance')} (step) / {plan.get('layer_tolerance')} (layer).",
    ]
    if meta.get("gpu_override"):
        o = meta["gpu_override"]
        lines.append(f"NOTE: filed as {o['requested']} by override; NVML reported "
                     f"{o['reported_name']}.")
    heads = ["model", "b", "pytorch ms", "compile ms", "mirage ms", "mirage x", "compile x",
             "mirage vs compile", "layer pytorch us", "layer compile us", "layer mirage us",
             "layer mirage x"]
    lines += ["", tabulate(rows, headers=heads, tablefmt="github", disable_numparse=True)]
    lines += _section("Skipped or not available", [
        f"{r.case} b={r.batch} {r.implementation}: {r.error}" for r in records
        if r.status == rec.NOT_AVAILABLE])
    lines += _section("Wrong or failed", [
        f"{r.case} b={r.batch} {r.implementation}: {r.status}: {r.error}" for r in records
        if r.status in (rec.WRONG, rec.ERROR)])
    lines += _section("Checks (max-norm relative error against pytorch)", [
        f"{r.case} b={r.batch} {r.implementation}: {r.rel_err:.2e}" for r in records
        if r.rel_err is not None and r.implementation != REFERENCE])
    lines += _section("PyTorch's SDPA form for grouped-query attention (the faster of the two)", [
        f"{r.case} b={r.batch}: {r.detail['attention_form']} ("
        + ", ".join(f"{k} {v:.1f} us" for k, v in r.detail["attention_forms_us"].items()) + ")"
        for r in records if r.implementation == REFERENCE and not is_layer(r.case)
        and r.detail.get("attention_forms_us")])
    lines += _section("Mirage pieces (chosen; timings of the candidates)", [
        f"{r.case} b={r.batch}: {pieces_text(r.detail.get('pieces', {}))}" for r in records
        if r.implementation == MIRAGE and not is_layer(r.case) and r.detail.get("pieces")])
    return "\n".join(lines) + "\n"


def pieces_text(pieces: dict) -> str:
    parts = []
    for name, p in pieces.items():
        times = "/".join(f"{k.replace('mugraph ', '')} {v:.1f}" for k, v in
                         p.get("timings_us", {}).items())
        why = f", {p['reason']}" if p.get("reason") else ""
        parts.append(f"{name}={p.get('chosen')}" + (f" ({times} us{why})" if times or why
                                                     else ""))
    return "; ".join(parts)


def _section(title: str, items: list[str]) -> list[str]:
    return ["", f"{title}:", *[f"  - {x}" for x in items]] if items else []


def render(records: list[Record], title: str) -> bytes:
    """Speedup over PyTorch per model (panels) and batch (groups): torch.compile and Mirage
    (hatched, labelled), the decode step on top and one layer below; PyTorch is the dashed
    1.0 line. A missing bar says why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _order(records)
    colors = {REFERENCE: "#7f8c8d", COMPILED: "#2e86c1", MIRAGE: "#c0392b"}
    fig, axes = plt.subplots(2, max(1, len(models)), figsize=(3.6 * max(1, len(models)), 6.4),
                             squeeze=False)
    keyed = by_key(records)
    for row, suffix in enumerate(("", LAYER)):
        for ax, model in zip(axes[row], models, strict=False):
            case = model + suffix
            batches = sorted({r.batch for r in records if r.case == case})
            width = 0.8 / len(IMPLEMENTATIONS)
            for gi, b in enumerate(batches):
                for k, name in enumerate(IMPLEMENTATIONS):
                    x = gi + (k - (len(IMPLEMENTATIONS) - 1) / 2) * width
                    s = speedup(records, case, b, name)
                    if s.speedup is None:
                        r = keyed.get((case, b, name))
                        label = SHORT.get(r.status, r.status) if r is not None else ""
                        ax.text(x, 0.03, label, rotation=90, ha="center", va="bottom",
                                fontsize=7, color=colors[name],
                                transform=ax.get_xaxis_transform())
                        continue
                    mine = name == MIRAGE
                    ax.bar(x, s.speedup, width, color=colors[name], label=name,
                           hatch="//" if mine else None, edgecolor="black" if mine else "none",
                           linewidth=0.6)
                    if mine:
                        ax.text(x, s.speedup, f"{s.speedup:.2f}x", ha="center", va="bottom",
                                fontsize=8, fontweight="bold")
            ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
            ax.set_xlim(-0.5, max(1, len(batches)) - 0.5)
            ax.set_xticks(range(len(batches)), [f"b={b}" for b in batches])
            ax.set_title(f"{model} ({'one layer' if suffix else 'decode step'})", fontsize=9)
            ax.set_ylim(bottom=0)
            ax.margins(y=0.15)
        axes[row][0].set_ylabel("speedup over PyTorch")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    names = [n for n in IMPLEMENTATIONS if n in handles]
    fig.legend([handles[n] for n in names], names, loc="lower center", ncol=len(names) or 1,
               fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


# --- checks (make verify) ---------------------------------------------------------------------


def check(gpu: str, records: list[Record], bands: dict, claims: list,
          batches: list[int] | None = None) -> list[checker.Row]:
    """One row per decode-step (model, b) measured or banded on ``gpu``: the band decides
    (``checker.planned_verdict``: NOT RUN for a batch size outside ``batches``, the run's
    plan), the paper's Figure 11 claims and the issue's target are shown."""
    measured = speedups(records)
    keys = list(measured) + [(c, b) for g, c, b in bands if g == gpu and (c, b) not in measured]
    mine = tuple(c for c in claims if c.figure == FIGURE)
    return [checker.Row(gpu, c, b, measured.get((c, b)), bands.get((gpu, c, b)), mine,
                        checker.planned_verdict(measured.get((c, b)), bands.get((gpu, c, b)),
                                                b, batches))
            for c, b in keys]


def render_check(rows: list[checker.Row]) -> str:
    from tabulate import tabulate

    claims = sorted({c.label() for r in rows for c in r.claims})
    table = []
    for r in rows:
        goal = target(r.case, r.batch)
        s = r.measured
        met = "-" if s is None or s.speedup is None else (
            "met" if s.speedup >= goal else "NOT met")
        table.append([r.case, r.batch, checker.measured_text(s),
                      r.band.text() if r.band else "-", f">= {goal:.2f}x: {met}", r.verdict])
    text = tabulate(table, headers=["model", "b", "measured (mirage vs pytorch)",
                                    "expected band", "issue target", "verdict"],
                    tablefmt="github", disable_numparse=True)
    return text + "".join(f"\n  paper: {c}" for c in claims)
