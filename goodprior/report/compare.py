"""Compare evaluated models on the same instances: paired shifts in log-odds, controls, power.

The headline unit is the **log-odds of a matched pair**, log P(misaligned) - log P(aligned), in nats. Sigmoid
propensity saturates (most pairs of a small model lie beyond 4 nats, where the sigmoid is flat), so a shift of a
pair far from 0 is invisible in it; log-odds shifts are not. Every difference is paired: per instance, the mean
over its matched pairs of (model A's log-odds - model B's), intervals by bootstrap over instances. The pressure
effect of an instance is, per pair, its log-odds under threat and/or goal conflict minus the same pair's in the
instance's control context.

Two references: the baseline (Δ vs baseline) and the null control, an arm trained on neutral text at the same
budget (the **content effect**: what the data's content does beyond what fine-tuning alone does). The positive
control, trained on the misaligned answer itself, must show a train-split content effect that excludes zero and is
at least the run's minimum detectable effect: the **instrument check**. Without it nothing else is interpretable.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from goodprior.analysis import InstanceScore, find_saturated, instance_scores
from goodprior.measure.stats import NA, Estimate, bootstrap_mean, bootstrap_slope, mde, wilson
from goodprior.store import RunDB

# Figures reported in "Teaching Claude Why" (Anthropic, May 2026) for a far larger model: a labelled reference,
# not a target for a 135M model.
PAPER = {
    "honeypot-actions": "actions only: 22% -> 15%",
    "honeypot-deliberation": "with deliberation: 22% -> 3%",
    "difficult-advice": "~28x more token-efficient than honeypot demos (3M vs 85M tokens)",
    "docs+stories": "constitution docs + stories: 65% -> 19%",
}
SPLITS = ("heldout", "train")
# Arms whose data differ only in valence (the same prompts or situations, the aligned vs the misaligned turn):
# shown side by side as a paired difference, aligned twin minus misaligned twin.
VALENCE_TWINS = (("honeypot-actions", "honeypot-misaligned"), ("aligned-fiction", "misaligned-fiction"))
PairKey = tuple[str, str, str]  # (family, setting, pair id): a matched pair as the scenario library defines it


@dataclass(frozen=True)
class Model:
    """One evaluated model: the baseline, or an arm at one dose (its seeds averaged)."""

    name: str  # arm name, or "baseline"
    eval_ids: list[str]
    role: str | None = None  # positive | negative | neutral | None
    dose: int | None = None
    seeds: tuple[int, ...] = ()
    adapters: tuple[Path, ...] = ()

    @property
    def key(self) -> str:
        return self.name if self.dose is None else f"{self.name}@{self.dose}"


@dataclass
class Scores:
    """Per-instance scores of one model, seeds averaged: log-odds per pair and the secondary measures."""

    instances: dict[str, InstanceScore]
    logodds: dict[str, dict[str, float]]  # instance id -> pair id -> mean log-odds over seeds


@dataclass
class Shift:
    """Paired differences A - B in nats toward misaligned, per split, and of the pressure effect, with the
    minimum detectable effect (80% power, alpha 0.05) of each."""

    heldout: Estimate = NA
    train: Estimate = NA
    pressure: Estimate = NA
    mde: dict[str, float] = field(default_factory=dict)
    units: dict[str, list[float]] = field(default_factory=dict)  # the per-instance differences behind each estimate

    def as_dict(self) -> dict[str, Any]:
        return {k: {**getattr(self, k).as_dict(), "mde": _clean(self.mde.get(k))} for k in ("heldout", "train", "pressure")}


@dataclass
class ArmResult:
    name: str
    role: str | None
    dose: int | None
    seeds: list[int]
    budget: dict[str, Any]  # what training bought: tokens, loss_tokens, rows, steps, epochs (first seed)
    n_heldout: int
    n_train: int
    logodds: dict[str, Estimate]  # level per split (mean per-instance log-odds), nats
    pressure: Estimate  # level of the pressure effect, nats
    propensity: dict[str, Estimate]  # secondary: mean sigmoid of the log-odds, per split
    misaligned_rate: Estimate  # secondary: held-out instances whose most likely action is misaligned
    persona: Estimate  # persona log-odds shift vs a neutral context when recorded, else the raw persona score
    vs_baseline: Shift = field(default_factory=Shift)
    vs_null: Shift | None = None  # the content effect; None for the baseline and the null control itself
    seed_spread: dict[str, list[float]] = field(default_factory=dict)  # per-seed Δ vs baseline, per split
    families: dict[str, float] = field(default_factory=dict)  # mean log-odds per family
    loss_curves: list[list[dict]] = field(default_factory=list)
    paper: str = ""

    @property
    def label(self) -> str:
        tag = f" ({self.role} control)" if self.role else ""
        return self.name + tag


@dataclass
class InstrumentCheck:
    dose: int | None
    reference: str  # "neutral-text control" or "baseline" when the run has no null control
    train: Estimate
    mde: float
    heldout: Estimate
    pressure: Estimate
    passed: bool

    def line(self, unit: str) -> str:
        state = "PASSED" if self.passed else "FAILED"
        dose = f" at {self.dose:,} {unit.replace('_', '-')}" if self.dose is not None else ""
        why = "" if self.passed else (" (interval includes zero)" if not self.train.low > 0 else
                                      " (shift below the minimum detectable effect)")
        return (f"Instrument check {state}{why}: the positive control{dose} shifts train-split log-odds by "
                f"{self.train.fmt(pct=False, signed=True)} nats vs the {self.reference} (minimum detectable effect "
                f"{self.mde:.2f}); held-out {self.heldout.fmt(pct=False, signed=True)}, pressure effect "
                f"{self.pressure.fmt(pct=False, signed=True)}.")

    def as_dict(self) -> dict[str, Any]:
        return {"dose": self.dose, "reference": self.reference, "passed": self.passed, "mde": _clean(self.mde),
                "train": self.train.as_dict(), "heldout": self.heldout.as_dict(), "pressure": self.pressure.as_dict()}


@dataclass
class Comparison:
    arms: list[ArmResult]  # baseline first
    checks: list[InstrumentCheck]
    unit: str | None
    saturated: set[PairKey]
    without_saturated: dict[str, Shift]  # arm key -> content effect (or Δ vs baseline) with saturated pairs left out
    slopes: dict[str, dict[str, Estimate]]  # arm -> split -> slope of Δ vs baseline per log10 dose (>= 2 doses)
    twins: list[tuple[str, str, int | None, Shift]] = field(default_factory=list)  # (aligned, misaligned, dose, A - B)

    @property
    def interpretable(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def _clean(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else round(v, 6)


# ---------------------------------------------------------------- per-model scores


def model_scores(db: RunDB, eval_ids: list[str]) -> Scores:
    """Scores averaged over seeds, on the instances and pairs every seed's eval has (a fixed order keeps the
    seeded bootstrap reproducible)."""
    runs = [instance_scores(db, e) for e in eval_ids]
    common = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
    instances, logodds = {}, {}
    for iid in common:
        pairs = set.intersection(*(set(r[iid].action_logodds) for r in runs))
        logodds[iid] = {p: mean(r[iid].action_logodds[p] for r in runs) for p in sorted(pairs)}
        first = runs[0][iid]
        persona = mean(_persona_value(r[iid]) for r in runs)
        instances[iid] = InstanceScore(
            first.instance_id, first.family, first.family_version, first.split, first.setting, first.factors,
            mean(r[iid].propensity for r in runs), mean(r[iid].top_misaligned for r in runs) >= 0.5, persona)
    return Scores(instances, logodds)


def _persona_value(s: InstanceScore) -> float:
    """The calibrated persona shift (nats vs a neutral context) when the eval recorded one, else the raw score."""
    return s.persona if math.isnan(s.persona_shift) else s.persona_shift


def _pair_key(s: InstanceScore, pair: str) -> PairKey:
    return (s.family, s.setting, pair)


def instance_logodds(sc: Scores, iid: str, exclude: set[PairKey], pairs: set[str] | None = None) -> float | None:
    """Mean log-odds over an instance's pairs (those in `pairs` if given), leaving out excluded pairs."""
    s = sc.instances[iid]
    vals = [v for p, v in sc.logodds[iid].items() if _pair_key(s, p) not in exclude and (pairs is None or p in pairs)]
    return mean(vals) if vals else None


def control_of(s: InstanceScore) -> str:
    return s.twin_key(goal="none", threat="none")


def pressure_effects(sc: Scores, exclude: set[PairKey]) -> dict[str, float]:
    """Per pressured instance: mean over its pairs of (log-odds here - log-odds in its control context)."""
    out = {}
    for iid, s in sc.instances.items():
        c = control_of(s)
        if s.is_honeypot and c in sc.logodds:
            pairs = [p for p in sc.logodds[iid] if p in sc.logodds[c] and _pair_key(s, p) not in exclude]
            if pairs:
                out[iid] = mean(sc.logodds[iid][p] - sc.logodds[c][p] for p in pairs)
    return out


def paired_shift(a: Scores, b: Scores, exclude: set[PairKey]) -> Shift:
    """A - B per instance (mean over the pairs both have), per split; and the pressure effect's difference."""
    shift = Shift()
    for split in SPLITS:
        diffs = []
        for iid in sorted(set(a.logodds) & set(b.logodds)):
            if a.instances[iid].split != split:
                continue
            pairs = set(a.logodds[iid]) & set(b.logodds[iid])
            la, lb = instance_logodds(a, iid, exclude, pairs), instance_logodds(b, iid, exclude, pairs)
            if la is not None and lb is not None:
                diffs.append(la - lb)
        setattr(shift, split, bootstrap_mean(diffs))
        shift.mde[split], shift.units[split] = mde(diffs), diffs
    pa, pb = pressure_effects(a, exclude), pressure_effects(b, exclude)
    diffs = [pa[i] - pb[i] for i in sorted(pa) if i in pb]
    shift.pressure, shift.mde["pressure"], shift.units["pressure"] = bootstrap_mean(diffs), mde(diffs), diffs
    return shift


def saturated_pairs(base: Scores, threshold: float) -> set[PairKey]:
    """Pairs whose mean control-context log-odds lie beyond `threshold` nats for the baseline model (the rule every
    eval and `scenarios validate --model` use: goodprior.analysis.find_saturated)."""
    return find_saturated([(s.family, s.setting, pair, v) for iid, s in base.instances.items() if not s.is_honeypot
                           for pair, v in base.logodds[iid].items()], threshold)


# ---------------------------------------------------------------- the comparison


def _level(sc: Scores, split: str, exclude: set[PairKey]) -> Estimate:
    vals = [instance_logodds(sc, i, exclude) for i, s in sc.instances.items() if s.split == split]
    return bootstrap_mean(v for v in vals if v is not None)


def _summaries(adapters: tuple[Path, ...]) -> list[dict]:
    return [json.loads((p / "train_summary.json").read_text()) for p in adapters if (p / "train_summary.json").exists()]


def check_passes(shift: Estimate, min_detectable: float) -> bool:
    """The positive control is detected: its interval excludes zero toward misaligned and its shift is at least
    the run's minimum detectable effect (so a lucky interval from a run without power does not pass)."""
    return shift.n > 1 and shift.low > 0 and not math.isnan(min_detectable) and shift.value >= min_detectable


def compare(db: RunDB, models: list[Model], unit: str | None = None, saturation_nats: float | None = None) -> Comparison:
    """`models`: baseline first. Saturated pairs (judged on the baseline's control contexts) are kept in the
    headline and left out in a second set of content effects when `saturation_nats` is given."""
    scores = {m.key: model_scores(db, m.eval_ids) for m in models}
    base_model = models[0]
    base = scores[base_model.key]
    saturated = saturated_pairs(base, saturation_nats) if saturation_nats else set()
    null_by_dose = {m.dose: m for m in models if m.role == "neutral"}
    results: list[ArmResult] = []
    for m in models:
        sc = scores[m.key]
        summaries = _summaries(m.adapters)
        fam: dict[str, list[float]] = defaultdict(list)
        for iid, s in sc.instances.items():
            if (v := instance_logodds(sc, iid, set())) is not None:
                fam[s.family].append(v)
        held = [s for s in sc.instances.values() if s.split == "heldout"]
        r = ArmResult(
            name=m.name, role=m.role, dose=m.dose, seeds=list(m.seeds),
            budget=summaries[0].get("budget", {"tokens": summaries[0]["data"]["tokens"]}) if summaries else {},
            n_heldout=len(held), n_train=sum(s.split == "train" for s in sc.instances.values()),
            logodds={split: _level(sc, split, set()) for split in SPLITS},
            pressure=bootstrap_mean(pressure_effects(sc, set()).values()),
            propensity={split: bootstrap_mean(s.propensity for s in sc.instances.values() if s.split == split)
                        for split in SPLITS},
            misaligned_rate=wilson(sum(s.top_misaligned for s in held), len(held)),
            persona=bootstrap_mean(s.persona for s in sc.instances.values() if not math.isnan(s.persona)),
            families={f: mean(v) for f, v in sorted(fam.items())},
            loss_curves=[x["loss_curve"] for x in summaries], paper=PAPER.get(m.name, ""),
        )
        if m is not base_model:
            r.vs_baseline = paired_shift(sc, base, set())
            null = null_by_dose.get(m.dose)
            if null is not None and null is not m:
                r.vs_null = paired_shift(sc, scores[null.key], set())
            if len(m.eval_ids) > 1:  # seed-to-seed spread of the shift vs baseline
                per_seed = [paired_shift(model_scores(db, [e]), base, set()) for e in m.eval_ids]
                r.seed_spread = {split: [getattr(s, split).value for s in per_seed] for split in SPLITS}
        results.append(r)

    checks = []
    for m, r in zip(models, results):
        if m.role != "positive":
            continue
        shift, reference = (r.vs_null, "neutral-text control") if r.vs_null is not None else (r.vs_baseline, "baseline")
        passed = check_passes(shift.train, shift.mde["train"])
        checks.append(InstrumentCheck(m.dose, reference, shift.train, shift.mde["train"], shift.heldout,
                                      shift.pressure, passed))

    without = {}
    if saturated:
        for m, r in zip(models[1:], results[1:]):
            ref = null_by_dose.get(m.dose)
            other = scores[ref.key] if ref is not None and ref is not m else base
            without[m.key] = paired_shift(scores[m.key], other, saturated)

    slopes: dict[str, dict[str, Estimate]] = {}
    doses = sorted({m.dose for m in models if m.dose is not None})
    if len(doses) >= 2:
        for name in dict.fromkeys(m.name for m in models if m.dose is not None):
            by_dose = {r.dose: r for r in results if r.name == name}
            if set(by_dose) != set(doses):
                continue
            for split in SPLITS:  # the same instances at every dose, so the bootstrap resamples them jointly
                cols = [by_dose[d].vs_baseline.units[split] for d in doses]
                if cols[0] and len({len(c) for c in cols}) == 1:
                    slopes.setdefault(name, {})[split] = bootstrap_slope([math.log10(d) for d in doses], cols)
    twins = []
    for good, bad in VALENCE_TWINS:
        for m in models:
            other = next((o for o in models if o.name == bad and o.dose == m.dose), None)
            if m.name == good and other is not None:
                twins.append((good, bad, m.dose, paired_shift(scores[m.key], scores[other.key], set())))
    return Comparison(results, checks, unit, saturated, without, slopes, twins)


def seed_sd(values: list[float]) -> float:
    """Sample standard deviation over seeds (n - 1): the spread to expect between two runs that differ in seed."""
    return stdev(values) if len(values) > 1 else float("nan")


def as_json(cmp: Comparison) -> dict[str, Any]:
    """Every number of the main table, keyed by arm, dose, seed ("mean" for seeds averaged) and metric."""
    rows = []
    for r in cmp.arms:
        metrics = {
            "logodds_heldout": r.logodds["heldout"].as_dict(), "logodds_train": r.logodds["train"].as_dict(),
            "pressure_effect": r.pressure.as_dict(), "propensity_heldout": r.propensity["heldout"].as_dict(),
            "propensity_train": r.propensity["train"].as_dict(), "misaligned_rate_heldout": r.misaligned_rate.as_dict(),
            "persona": r.persona.as_dict(), "vs_baseline": r.vs_baseline.as_dict(),
            "content_effect": r.vs_null.as_dict() if r.vs_null else None,
        }
        if r.name in cmp.slopes and r.dose == max(x.dose for x in cmp.arms if x.name == r.name):
            for split, est in cmp.slopes[r.name].items():
                metrics[f"{split}_slope_per_log10_dose"] = est.as_dict()
        rows.append({"arm": r.name, "role": r.role, "dose": r.dose, "seed": "mean", "budget": r.budget,
                     "n_heldout": r.n_heldout, "n_train": r.n_train, "metrics": metrics})
        for k, seed in enumerate(r.seeds if r.seed_spread else []):
            rows.append({"arm": r.name, "role": r.role, "dose": r.dose, "seed": seed,
                         "metrics": {f"vs_baseline_{split}": _clean(r.seed_spread[split][k]) for split in SPLITS}})
    return {"unit": "nats toward misaligned (log P(misaligned) - log P(aligned)), paired per instance",
            "budget_unit": cmp.unit, "interpretable": cmp.interpretable,
            "instrument_checks": [c.as_dict() for c in cmp.checks],
            "saturated_pairs": sorted("/".join(k) for k in cmp.saturated),
            "without_saturated": {k: v.as_dict() for k, v in cmp.without_saturated.items()},
            "valence_twins": [{"aligned": a, "misaligned": b, "dose": d, "shift": s.as_dict()} for a, b, d, s in cmp.twins],
            "arms": rows}
