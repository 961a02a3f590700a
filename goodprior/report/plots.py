"""Report figures as PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from goodprior.report.compare import ArmResult  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def propensity_by_arm(results: list[ArmResult]) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(results))
    for offset, attr, label, color in ((-0.18, "heldout", "held-out families", "#3b6ea5"),
                                       (0.18, "train", "train-split families", "#d08c2b")):
        est = [getattr(r, attr) for r in results]
        vals = np.array([e.value for e in est]) * 100
        err = np.array([[e.value - e.low for e in est], [e.high - e.value for e in est]]) * 100
        ax.bar(x + offset, vals, 0.36, yerr=err, capsize=3, label=label, color=color)
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, [r.name for r in results], rotation=20, ha="right")
    ax.set_ylabel("propensity (%)")
    ax.set_title("Misaligned propensity by arm (95% intervals)")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def family_heatmap(results: list[ArmResult]) -> bytes:
    families = sorted({f for r in results for f in r.families})
    data = np.array([[r.families.get(f, np.nan) * 100 for r in results] for f in families])
    fig, ax = plt.subplots(figsize=(1.3 * len(results) + 3, 0.45 * len(families) + 1.5))
    im = ax.imshow(data, cmap="RdYlBu_r", vmin=np.nanmin(data) - 1, vmax=np.nanmax(data) + 1, aspect="auto")
    ax.set_xticks(range(len(results)), [r.name for r in results], rotation=25, ha="right")
    ax.set_yticks(range(len(families)), families)
    for i in range(len(families)):
        for j in range(len(results)):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="propensity (%)")
    ax.set_title("Propensity by family and arm")
    return _png(fig)


def loss_curves(results: list[ArmResult]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in results:
        for k, curve in enumerate(r.loss_curves):
            if curve:
                ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".",
                        label=r.name if k == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("LoRA training loss")
    if ax.lines:
        ax.legend(frameon=False, fontsize=8)
    return _png(fig)
