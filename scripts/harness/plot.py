"""Figure 7 in the paper's style: per case a panel of bars grouped by batch size.

Each bar is one implementation's speedup over the best correct baseline of that (case, batch)
(so the best baseline reaches 1.0, the dashed line); Mirage's bar is drawn last, hatched, and
labelled with its speedup. A missing or wrong Mirage is written where its bar would be. Reads
records; measures nothing.
"""

from __future__ import annotations

import io

from scripts.harness.analysis import MIRAGE, case_order, speedups
from scripts.harness.cases import CASES
from scripts.harness.records import Record


def render(records: list[Record], title: str) -> bytes:
    """The figure as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ups = speedups(records)
    cases = sorted({c for c, _ in ups}, key=case_order)
    timed = [r for r in records if r.ok and r.implementation != MIRAGE]
    everyone = list(dict.fromkeys(r.implementation for r in timed)) + [MIRAGE]
    colors = {name: plt.cm.tab20(i % 20) for i, name in enumerate(everyone[:-1])}
    colors[MIRAGE] = "#c0392b"

    cols = min(3, max(1, len(cases)))
    rows = (len(cases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    by_key = {(r.case, r.batch, r.implementation): r for r in records}
    for ax, case in zip(axes.flat, cases, strict=False):
        batches = sorted(b for c, b in ups if c == case)
        # This panel's bars: the implementations timed for this case, Mirage last.
        impls = [n for n in everyone[:-1] if any(r.case == case and r.implementation == n
                                                  for r in timed)] + [MIRAGE]
        width = 0.8 / len(impls)
        for gi, b in enumerate(batches):
            s = ups[(case, b)]
            for k, name in enumerate(impls):
                x = gi + (k - (len(impls) - 1) / 2) * width
                r = by_key.get((case, b, name))
                value = (s.best_baseline_us / r.median_us
                         if r is not None and r.ok and s.best_baseline_us else None)
                if value is None:
                    if name == MIRAGE:  # say why Mirage has no bar
                        ax.text(x, 0.03, s.mirage_status, rotation=90, ha="center",
                                va="bottom", fontsize=7, color=colors[MIRAGE],
                                transform=ax.get_xaxis_transform())
                    continue
                is_mirage = name == MIRAGE
                ax.bar(x, value, width, color=colors[name], hatch="//" if is_mirage else None,
                       edgecolor="black" if is_mirage else "none", linewidth=0.6,
                       label=name)
                if is_mirage:
                    ax.text(x, value, f"{value:.2f}x", ha="center", va="bottom", fontsize=8,
                            fontweight="bold")
        ax.set_xlim(-0.5, len(batches) - 0.5)
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(batches)), [f"b={b}" for b in batches])
        ax.set_title(CASES[case].title if case in CASES else case)
        ax.set_ylabel("speedup over best baseline")
        ax.margins(y=0.15)  # room for the labels
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    handles, labels = {}, []
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    labels.sort(key=everyone.index)
    fig.legend([handles[x] for x in labels], labels, loc="lower center", ncol=min(6, len(labels)),
               fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
