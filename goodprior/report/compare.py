"""Compare arms against the baseline on the same instances: levels with intervals, paired differences."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from goodprior.analysis import InstanceScore, instance_scores
from goodprior.measure.stats import NA, Estimate, bootstrap_mean, wilson
from goodprior.store import RunDB

# Figures reported in "Teaching Claude Why" (Anthropic, May 2026) for a far larger model: a labelled reference,
# not a target for a 135M model.
PAPER = {
    "honeypot-actions": "actions only: 22% -> 15%",
    "honeypot-deliberation": "with deliberation: 22% -> 3%",
    "difficult-advice": "~28x more token-efficient than honeypot demos (3M vs 85M tokens)",
    "docs+stories": "constitution docs + stories: 65% -> 19%",
}


@dataclass
class ArmResult:
    name: str
    control: bool
    seeds: list[int]
    tokens: int | None
    n_heldout: int
    heldout: Estimate
    train: Estimate
    context_shift: Estimate
    persona: Estimate
    misaligned_rate: Estimate
    d_heldout: Estimate = NA
    d_train: Estimate = NA
    d_persona: Estimate = NA
    d_context_shift: Estimate = NA
    d_misaligned_rate: Estimate = NA
    per_100k: Estimate = NA
    families: dict[str, float] = field(default_factory=dict)
    loss_curves: list[list[dict]] = field(default_factory=list)
    paper: str = ""


def _averaged(db: RunDB, eval_ids: list[str]) -> dict[str, InstanceScore]:
    """Per-instance scores averaged over seeds (instances present in every seed's eval)."""
    runs = [instance_scores(db, e) for e in eval_ids]
    common = set.intersection(*(set(r) for r in runs)) if runs else set()
    out = {}
    for iid in sorted(common):  # a fixed order keeps the seeded bootstrap reproducible
        first = runs[0][iid]
        out[iid] = InstanceScore(first.instance_id, first.family, first.family_version, first.split, first.setting,
                                 first.factors, mean(r[iid].propensity for r in runs),
                                 mean(r[iid].top_misaligned for r in runs) >= 0.5, mean(r[iid].persona for r in runs))
    return out


def _shifts(scores: dict[str, InstanceScore]) -> dict[str, float]:
    return {i: s.propensity - scores[c].propensity for i, s in scores.items()
            if s.is_honeypot and (c := s.twin_key(goal="none", threat="none")) in scores}


def _paired(arm: dict[str, float], base: dict[str, float]) -> Estimate:
    return bootstrap_mean([arm[i] - base[i] for i in sorted(arm) if i in base])


def compare(db: RunDB, arms: list[dict[str, Any]], adapters: dict[str, list[Path]]) -> list[ArmResult]:
    """`arms`: [{name, control, seeds, eval_ids}], baseline first. `adapters`: arm -> adapter folders."""
    scores = {a["name"]: _averaged(db, a["eval_ids"]) for a in arms}
    base = scores[arms[0]["name"]]
    results = []
    for a in arms:
        s = scores[a["name"]]
        held = {i: v for i, v in s.items() if v.split == "heldout"}
        train = {i: v for i, v in s.items() if v.split == "train"}
        fam: dict[str, list[float]] = defaultdict(list)
        for v in s.values():
            fam[v.family].append(v.propensity)
        summaries = [json.loads((p / "train_summary.json").read_text()) for p in adapters.get(a["name"], [])
                     if (p / "train_summary.json").exists()]
        r = ArmResult(
            name=a["name"], control=a.get("control", False), seeds=a.get("seeds", []),
            tokens=summaries[0]["data"]["tokens"] if summaries else None, n_heldout=len(held),
            heldout=bootstrap_mean(v.propensity for v in held.values()),
            train=bootstrap_mean(v.propensity for v in train.values()),
            context_shift=bootstrap_mean(_shifts(s).values()),
            persona=bootstrap_mean(v.persona for v in s.values()),
            misaligned_rate=wilson(sum(v.top_misaligned for v in held.values()), len(held)),
            families={f: mean(v) for f, v in sorted(fam.items())},
            loss_curves=[x["loss_curve"] for x in summaries], paper=PAPER.get(a["name"], ""),
        )
        if a is not arms[0]:
            prop = lambda d, split: {i: v.propensity for i, v in d.items() if v.split == split}
            r.d_heldout = _paired(prop(s, "heldout"), prop(base, "heldout"))
            r.d_train = _paired(prop(s, "train"), prop(base, "train"))
            r.d_persona = _paired({i: v.persona for i, v in s.items()}, {i: v.persona for i, v in base.items()})
            r.d_context_shift = _paired(_shifts(s), _shifts(base))
            r.d_misaligned_rate = _paired({i: float(v.top_misaligned) for i, v in held.items()},
                                          {i: float(v.top_misaligned) for i, v in base.items() if v.split == "heldout"})
            if r.tokens:
                k = -100_000 / r.tokens  # reduction (positive = better) per 100k training tokens
                d = r.d_heldout
                r.per_100k = Estimate(d.value * k, min(d.low * k, d.high * k), max(d.low * k, d.high * k), d.n)
        results.append(r)
    return results
