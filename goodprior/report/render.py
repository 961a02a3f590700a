"""Write the report: Markdown plus a self-contained HTML page (images embedded), and the plots as PNGs.

The page opens with the instrument check (can this run see a planted answer?), then says in words what the run
shows and could have shown (its minimum detectable effects against paper-sized effects), then the tables.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from goodprior.fsutil import write_text_atomic
from goodprior.measure.stats import Estimate
from goodprior.report import plots
from goodprior.report.compare import ArmResult, Comparison, Shift, seed_sd
from goodprior.tables import markdown_table

# The paper's effects as shifts in log-odds, assuming one logit shift for every pair: logit(after) - logit(before).
PAPER_SHIFTS = {
    "honeypot deliberation, 22% -> 3%": math.log(3 / 97) - math.log(22 / 78),
    "constitution docs + stories, 65% -> 19%": math.log(19 / 81) - math.log(65 / 35),
    "honeypot actions only, 22% -> 15%": math.log(15 / 85) - math.log(22 / 78),
}

SHIFT_HEADER = ["arm", "dose", "Δ held-out vs baseline", "content effect, held-out", "Δ train-split vs baseline",
                "content effect, train-split", "Δ pressure effect vs baseline", "content effect, pressure",
                "MDE held-out / train / pressure"]
LEVEL_HEADER = ["arm", "dose", "log-odds held-out", "log-odds train-split", "pressure effect", "propensity held-out",
                "propensity train-split", "misaligned-choice rate (held-out)", "persona", "paper (far larger model)"]
BUDGET_HEADER = ["arm", "dose", "tokens", "loss-bearing tokens", "rows", "optimiser steps", "epochs"]


def _n(e: Estimate) -> str:
    return e.fmt(pct=False, signed=True)


def _dose(r: ArmResult) -> str:
    return "-" if r.dose is None else f"{r.dose:,}"


def _mde(s: Shift) -> str:
    return " / ".join("n/a" if math.isnan(s.mde.get(k, math.nan)) else f"{s.mde[k]:.2f}" for k in ("heldout", "train", "pressure"))


def shift_rows(cmp: Comparison) -> list[list[str]]:
    rows = []
    for r in cmp.arms[1:]:
        c = r.vs_null
        rows.append([r.label, _dose(r), _n(r.vs_baseline.heldout), _n(c.heldout) if c else "-", _n(r.vs_baseline.train),
                     _n(c.train) if c else "-", _n(r.vs_baseline.pressure), _n(c.pressure) if c else "-",
                     _mde(c or r.vs_baseline)])
    return rows


def level_rows(cmp: Comparison) -> list[list[str]]:
    return [[r.label, _dose(r), _n(r.logodds["heldout"]), _n(r.logodds["train"]), _n(r.pressure),
             r.propensity["heldout"].fmt(), r.propensity["train"].fmt(), r.misaligned_rate.fmt(),
             r.persona.fmt(pct=False, signed=True), r.paper or "-"] for r in cmp.arms]


def budget_rows(cmp: Comparison) -> list[list[str]]:
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else ("-" if v is None else str(v))
    return [[r.label, _dose(r)] + [fmt(r.budget.get(k)) for k in ("tokens", "loss_tokens", "rows", "steps", "epochs")]
            for r in cmp.arms[1:]]


def check_lines(cmp: Comparison) -> list[str]:
    if not cmp.checks:
        return ["Instrument check NOT RUN: this experiment has no positive control (an arm trained on the misaligned "
                "answer), so nothing shows that it could see an effect. Read its differences as unvalidated."]
    lines = [c.line(cmp.unit or "tokens") for c in cmp.checks]
    failed = [c for c in cmp.checks if not c.passed]
    if failed and len(failed) == len(cmp.checks):
        lines.append("Because the positive control was not detected, every other result of this run is NOT "
                     "INTERPRETABLE: a null result here says nothing about the data.")
    elif failed:
        doses = ", ".join(f"{c.dose:,}" for c in failed if c.dose is not None)
        lines.append(f"The positive control was not detected at dose {doses}: every result at that dose is NOT "
                     "INTERPRETABLE; results at the other doses are.")
    return lines


def findings(cmp: Comparison) -> str:
    """A short, honest paragraph generated from the numbers."""
    base, arms = cmp.arms[0], cmp.arms[1:]
    parts = [f"Shifts are in nats of log-odds toward the misaligned action, paired per instance "
             f"({base.n_heldout} held-out and {base.n_train} train-split instances per model). The baseline's mean "
             f"held-out log-odds is {_n(base.logodds['heldout'])} and its pressure effect {_n(base.pressure)}."]
    null = [r for r in arms if r.role == "neutral"]
    for r in null:
        parts.append(f"Fine-tuning alone (the null control, {r.name}{_at(r)}) moves held-out log-odds by "
                     f"{_n(r.vs_baseline.heldout)} and train-split by {_n(r.vs_baseline.train)}.")
    clear, unclear = [], []
    for r in arms:
        if r.vs_null is None:
            continue
        text = f"{r.name}{_at(r)} {_n(r.vs_null.heldout)} held-out, {_n(r.vs_null.train)} train-split"
        (clear if r.vs_null.heldout.excludes_zero() or r.vs_null.train.excludes_zero() else unclear).append(text)
    if clear:
        parts.append("Content effects (vs the null control) whose interval excludes zero on at least one split: "
                     + "; ".join(clear) + ".")
    if unclear:
        parts.append("Content effects not distinguishable from zero at this sample size: " + "; ".join(unclear) + ".")
    mdes = [r.vs_null.mde["heldout"] for r in arms if r.vs_null and not math.isnan(r.vs_null.mde["heldout"])]
    if mdes:
        worst = max(mdes)
        could = [k for k, v in PAPER_SHIFTS.items() if abs(v) >= worst]
        could_not = [k for k, v in PAPER_SHIFTS.items() if abs(v) < worst]
        parts.append(f"Power: the held-out content effects' minimum detectable effect is up to {worst:.2f} nats "
                     f"(80% power, alpha 0.05). Read as one logit shift per pair, the paper's effects are "
                     + ", ".join(f"{k}: {v:+.2f}" for k, v in PAPER_SHIFTS.items()) + " nats; this run could have "
                     f"detected {', '.join(could) or 'none of them'}"
                     + (f" and not {', '.join(could_not)}" if could_not else "") + ".")
    parts.append("These are log-prob preferences of a small model over matched choices; compare arms with each other "
                 "and with the controls, not with the paper's absolute rates.")
    return " ".join(parts)


def _at(r: ArmResult) -> str:
    return "" if r.dose is None else f" at {r.dose:,}"


def saturation_lines(cmp: Comparison) -> list[str]:
    if not cmp.saturated:
        return ["No matched pair is saturated at the baseline (control-context log-odds within the threshold)."]
    out = [f"{len(cmp.saturated)} matched pairs are saturated at the baseline (one option wins in the control "
           f"context whatever the situation): {', '.join(sorted('/'.join(k) for k in cmp.saturated))}.",
           "Shifts with those pairs left out:"]
    for r in cmp.arms[1:]:
        s = cmp.without_saturated.get(r.name if r.dose is None else f"{r.name}@{r.dose}")
        if s is not None:
            ref = "content effect" if r.vs_null is not None else "Δ vs baseline"
            out.append(f"{r.label}{_at(r)}: {ref} held-out {_n(s.heldout)}, train-split {_n(s.train)}, "
                       f"pressure {_n(s.pressure)}")
    return out


def spread_lines(cmp: Comparison) -> list[str]:
    out = []
    for r in cmp.arms[1:]:
        if r.seed_spread:
            out.append(f"{r.label}{_at(r)}: Δ vs baseline per seed, held-out "
                       f"{', '.join(f'{v:+.2f}' for v in r.seed_spread['heldout'])} (sd {seed_sd(r.seed_spread['heldout']):.2f}), "
                       f"train-split {', '.join(f'{v:+.2f}' for v in r.seed_spread['train'])} "
                       f"(sd {seed_sd(r.seed_spread['train']):.2f})")
    return out or ["One seed per arm: seed-to-seed spread is not estimated (add seeds to the experiment)."]


def twin_lines(cmp: Comparison) -> list[str]:
    return [f"{a} − {b}{'' if d is None else f' at {d:,}'}: held-out {_n(s.heldout)}, train-split {_n(s.train)}, "
            f"pressure {_n(s.pressure)} (the same prompts or situations; only the valence of the trained turn differs)"
            for a, b, d, s in cmp.twins]


def slope_lines(cmp: Comparison) -> list[str]:
    if not cmp.slopes:
        return []
    words = {"heldout": "held-out", "train": "train-split"}
    return [f"{name}: {words[split]} Δ vs baseline changes by {_n(est)} nats per tenfold dose"
            for name, by_split in cmp.slopes.items() for split, est in by_split.items()]


def write_report(folder: Path, title: str, cmp: Comparison, settings: list[str]) -> tuple[Path, Path]:
    images = {"shifts_forest.png": plots.forest(cmp), "family_logodds.png": plots.family_heatmap(cmp.arms),
              "loss_curves.png": plots.loss_curves(cmp.arms)}
    if cmp.slopes:
        images["dose_response.png"] = plots.dose_response(cmp)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / "plots" / name).write_bytes(data)
    checks, paragraph = check_lines(cmp), findings(cmp)
    tables = [("Shifts (nats toward misaligned, paired)", SHIFT_HEADER, shift_rows(cmp)),
              ("Levels and secondary measures", LEVEL_HEADER, level_rows(cmp)),
              ("What each budget bought", BUDGET_HEADER, budget_rows(cmp))]
    sections = [("Saturated pairs", saturation_lines(cmp)), ("Seed-to-seed spread", spread_lines(cmp))]
    if cmp.twins:
        sections.insert(0, ("Valence twins (aligned twin − misaligned twin, paired, nats)", twin_lines(cmp)))
    if cmp.slopes:
        sections.append(("Dose-response (slope against log10 dose, bootstrap over instances)", slope_lines(cmp)))
    note = ("Brackets are 95% intervals: percentile bootstrap over instances, paired over the same instances for every "
            "difference. Content effect = arm − null control (neutral text, same budget). MDE: the minimum detectable "
            "effect of that comparison (80% power, alpha 0.05). Propensity (mean sigmoid of the log-odds) and the "
            "misaligned-choice rate (Wilson interval) are secondary: they saturate. Persona: scenario-induced shift "
            "of the persona probe vs a neutral context (nats) when recorded. The paper column quotes figures reported "
            "in Anthropic's \"Teaching Claude Why\" (2026) for a far larger model, as a reference only.")

    md = [f"# {title}", ""] + [f"**{line}**" for line in checks] + ["", "## What this run shows", "", paragraph, ""]
    for name, header, rows in tables:
        md += [f"## {name}", "", markdown_table(header, rows), ""]
    md += [note, ""]
    for name, lines in sections:
        md += [f"## {name}", ""] + [f"- {line}" for line in lines] + [""]
    md += ["## Settings", ""] + [f"- {s}" for s in settings] + [""]
    md += [f"![{n}](plots/{n})" for n in images] + [""]
    md_path = folder / "report.md"
    write_text_atomic(md_path, "\n".join(md))

    def table_html(table_id: str, header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    # Each line in its own colour: a passed check green, a failed or missing one and the warnings red.
    checks_html = "".join(f'<p class="check {"pass" if "PASSED" in line else "fail"}">{html.escape(line)}</p>'
                          for line in checks)
    tables_html = "".join(f"<h2>{html.escape(name)}</h2>" + table_html(tid, header, rows)
                          for (name, header, rows), tid in zip(tables, ("main-table", "levels-table", "budget-table")))
    sections_html = "".join(f"<h2>{html.escape(name)}</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines)
                            + "</ul>" for name, lines in sections)
    imgs = "".join(f'<figure><img alt="{n}" src="data:image/png;base64,{base64.b64encode(d).decode()}"></figure>'
                   for n, d in images.items())
    settings_html = "".join(f"<li>{html.escape(s)}</li>" for s in settings)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body{{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ccc;padding:4px 6px;text-align:left}}
th{{background:#f3f3f3}}figure{{margin:1em 0}}img{{max-width:100%}}
.check{{padding:.6em .8em;border-radius:4px;font-weight:600}}.pass{{background:#e6f4ea;border:1px solid #8bc79a}}
.fail{{background:#fde8e8;border:1px solid #e39a9a}}</style></head><body>
<h1>{html.escape(title)}</h1><div id="instrument-check">{checks_html}</div>
<h2>What this run shows</h2><p id="findings">{html.escape(paragraph)}</p>{tables_html}<p>{html.escape(note)}</p>
{sections_html}<h2>Settings</h2><ul>{settings_html}</ul><h2>Plots</h2>{imgs}
<script>/* records how many figures decoded, for headless checks */ addEventListener("load", () => {{
const imgs = [...document.images]; document.body.dataset.imagesDecoded =
imgs.filter(i => i.complete && i.naturalWidth > 0).length + "/" + imgs.length; }});</script></body></html>"""
    html_path = folder / "report.html"
    write_text_atomic(html_path, page)
    return md_path, html_path
