"""Report figures as PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from goodprior.report.compare import ArmResult, Comparison  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(r: ArmResult) -> str:
    return r.name if r.dose is None else f"{r.name} @ {r.dose:,}"


def forest(cmp: Comparison) -> bytes:
    """Paired shifts with intervals, one row per arm x dose: the content effect (vs the null control) where there
    is one, else the shift vs baseline; held-out, train-split and pressure effect side by side."""
    arms = cmp.arms[1:]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * max(len(arms), 1) + 1.6), sharey=True)
    y = np.arange(len(arms))[::-1]
    for ax, (key, title) in zip(axes, (("heldout", "held-out families"), ("train", "train-split families"),
                                       ("pressure", "pressure effect"))):
        for yi, r in zip(y, arms):
            for shift, color, dy in ((r.vs_null, "#3b6ea5", 0.12), (r.vs_baseline, "#999999", -0.12)):
                est = getattr(shift, key) if shift is not None else None
                if est is None or est.n == 0:
                    continue
                ax.errorbar(est.value, yi + dy, xerr=[[est.value - est.low], [est.high - est.value]], fmt="o",
                            color=color, capsize=3, ms=4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("nats toward misaligned")
    axes[0].set_yticks(y, [_label(r) + (f" ({r.role})" if r.role else "") for r in arms])
    axes[0].plot([], [], "o", color="#3b6ea5", label="content effect (vs null control)")
    axes[0].plot([], [], "o", color="#999999", label="vs baseline")
    fig.legend(frameon=False, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 1.0))
    return _png(fig)


def dose_response(cmp: Comparison) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    names = list(dict.fromkeys(r.name for r in cmp.arms[1:] if r.dose is not None))
    for ax, key in zip(axes, ("heldout", "train")):
        for name in names:
            rs = sorted((r for r in cmp.arms if r.name == name and r.dose is not None), key=lambda r: r.dose)
            points = [(r.dose, getattr(r.vs_null or r.vs_baseline, key)) for r in rs]
            points = [(d, v) for d, v in points if v.n > 0]
            if points:
                ax.errorbar([d for d, _ in points], [v.value for _, v in points],
                            yerr=[[v.value - v.low for _, v in points], [v.high - v.value for _, v in points]],
                            marker="o", capsize=3, label=name)
        ax.axhline(0, color="black", lw=0.8)
        if ax.lines[1:] or ax.collections:
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no instances of this split", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"dose ({(cmp.unit or 'tokens').replace('_', '-')})")
        ax.set_title(f"{'held-out' if key == 'heldout' else 'train-split'}: content effect (vs baseline for the null)")
    axes[0].set_ylabel("nats toward misaligned")
    handles = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
    if handles:
        labels = list(dict.fromkeys(lab for ax in axes for lab in ax.get_legend_handles_labels()[1]))
        axes[1].legend(handles[: len(labels)], labels, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def family_heatmap(results: list[ArmResult]) -> bytes:
    families = sorted({f for r in results for f in r.families})
    data = np.array([[r.families.get(f, np.nan) for r in results] for f in families])
    fig, ax = plt.subplots(figsize=(1.3 * len(results) + 3, 0.45 * len(families) + 1.5))
    lim = np.nanmax(np.abs(data)) if data.size and not np.all(np.isnan(data)) else 1.0
    im = ax.imshow(data, cmap="RdYlBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(results)), [_label(r) for r in results], rotation=25, ha="right")
    ax.set_yticks(range(len(families)), families)
    for i in range(len(families)):
        for j in range(len(results)):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="mean log-odds (nats toward misaligned)")
    ax.set_title("Log-odds by family and model")
    return _png(fig)


def loss_curves(results: list[ArmResult]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in results:
        for k, curve in enumerate(r.loss_curves):
            if curve:
                ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker=".",
                        label=_label(r) if k == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("LoRA training loss")
    if ax.lines:
        ax.legend(frameon=False, fontsize=8)
    return _png(fig)
