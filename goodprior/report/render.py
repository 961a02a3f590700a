"""Write the report: Markdown plus a self-contained HTML page (images embedded), and the plots as PNGs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from goodprior.fsutil import write_text_atomic
from goodprior.report import plots
from goodprior.report.compare import ArmResult
from goodprior.tables import markdown_table

HEADER = ["arm", "held-out propensity", "Δ vs baseline", "train-split propensity", "Δ vs baseline", "context shift",
          "persona (self-preserving)", "Δ persona", "misaligned-choice rate (held-out)", "training tokens",
          "held-out reduction per 100k tokens", "paper (far larger model)"]


def main_rows(results: list[ArmResult]) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append([
            r.name + (" (control)" if r.control else ""), r.heldout.fmt(), r.d_heldout.fmt(signed=True),
            r.train.fmt(), r.d_train.fmt(signed=True), r.context_shift.fmt(signed=True), r.persona.fmt(),
            r.d_persona.fmt(signed=True), r.misaligned_rate.fmt(), f"{r.tokens:,} (exact)" if r.tokens else "0",
            r.per_100k.fmt(signed=True), r.paper or "-",
        ])
    return rows


def findings(results: list[ArmResult]) -> str:
    """A short, honest paragraph generated from the numbers."""
    base, arms = results[0], results[1:]
    parts = [f"The baseline's held-out propensity is {base.heldout.fmt()} over {base.n_heldout} held-out instances."]
    clear, unclear = [], []
    for r in arms:
        d = r.d_heldout
        if d.n == 0:
            continue
        direction = "lowers" if d.value < 0 else "raises"
        text = f"{r.name} {direction} it by {abs(d.value) * 100:.1f} points [{d.low * 100:+.1f}, {d.high * 100:+.1f}]"
        (clear if d.excludes_zero() else unclear).append(text)
    if clear:
        parts.append("Differences outside their paired 95% intervals: " + "; ".join(clear) + ".")
    if unclear:
        parts.append("Differences whose intervals include zero (not distinguishable from no effect at this sample "
                     "size): " + "; ".join(unclear) + ".")
    for r in (r for r in arms if r.control and r.d_heldout.n):
        seen = "it does" if r.d_heldout.excludes_zero() and r.d_heldout.value > 0 else "it does not, at this sample size"
        parts.append(f"The evil-AI-prior hypothesis predicts that the negative control ({r.name}) raises held-out "
                     f"propensity; {seen} ({r.d_heldout.fmt(signed=True)}).")
    persona = [r for r in arms if r.d_persona.excludes_zero()]
    if persona:
        parts.append("Persona scores move outside their intervals for: " +
                     ", ".join(f"{r.name} ({r.d_persona.fmt(signed=True)})" for r in persona) + ".")
    parts.append("These are log-prob preferences of a small model over matched choices; compare arms with each other "
                 "and with the baseline, not with the paper's absolute rates.")
    return " ".join(parts)


def write_report(folder: Path, title: str, results: list[ArmResult], settings: list[str]) -> tuple[Path, Path]:
    images = {"propensity_by_arm.png": plots.propensity_by_arm(results), "family_heatmap.png": plots.family_heatmap(results),
              "loss_curves.png": plots.loss_curves(results)}
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / "plots" / name).write_bytes(data)
    rows = main_rows(results)
    paragraph = findings(results)
    md = [f"# {title}", "", "## What this run shows", "", paragraph, "", "## Main table", "",
          markdown_table(HEADER, rows), "",
          "Brackets are 95% intervals: Wilson for rates, percentile bootstrap over instances for levels, paired "
          "bootstrap over the same instances for every difference from baseline. The paper column quotes figures "
          "reported in Anthropic's \"Teaching Claude Why\" (2026) for a far larger model, as a reference only.", "",
          "## Settings", ""] + [f"- {s}" for s in settings] + [""]
    md += [f"![{n}](plots/{n})" for n in images] + [""]
    md_path = folder / "report.md"
    write_text_atomic(md_path, "\n".join(md))

    def table_html() -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f'<table id="main-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    imgs = "".join(f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(d).decode()}"></figure>'
                   for n, d in images.items())
    settings_html = "".join(f"<li>{html.escape(s)}</li>" for s in settings)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ccc;padding:4px 6px;text-align:left}}
th{{background:#f3f3f3}}figure{{margin:1em 0}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><h2>What this run shows</h2><p id="findings">{html.escape(paragraph)}</p>
<h2>Main table</h2>{table_html()}<p>Brackets are 95% intervals (Wilson for rates; bootstrap for levels; paired
bootstrap over the same instances for differences from baseline). The paper column quotes figures reported for a
far larger model, as a reference only.</p><h2>Settings</h2><ul>{settings_html}</ul><h2>Plots</h2>{imgs}
<script>/* records how many figures decoded, for headless checks */ addEventListener("load", () => {{
const imgs = [...document.images]; document.body.dataset.imagesDecoded =
imgs.filter(i => i.complete && i.naturalWidth > 0).length + "/" + imgs.length; }});</script></body></html>"""
    html_path = folder / "report.html"
    write_text_atomic(html_path, page)
    return md_path, html_path
