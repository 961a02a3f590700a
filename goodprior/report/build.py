"""Assemble the report of a run folder from its database (and, for experiments, its adapters)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from goodprior.analysis import SATURATION_NATS
from goodprior.errors import UserError
from goodprior.fsutil import write_text_atomic
from goodprior.report.compare import Comparison, Model, as_json, compare
from goodprior.report.render import write_report
from goodprior.store import RunDB



def experiment_config(db: RunDB) -> dict | None:
    if not db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'experiment'"):
        return None  # a plain `goodprior eval` folder
    rows = db.query("SELECT config FROM experiment")
    return json.loads(rows[0]["config"]) if rows else None


def open_run_db(folder: Path) -> RunDB:
    """The run's database, checked read-only first: a file that is not a goodprior database is named in one line
    and left untouched (opening it read-write would add goodprior's tables to someone else's SQLite file)."""
    path = folder / "results.sqlite"
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise UserError(f"{path}: not an SQLite database")
        try:
            con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
            try:
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path}: unreadable database ({exc})") from None
        if "evals" not in tables:
            raise UserError(f"{path}: an SQLite database but not a goodprior run (no evals table)")
    return RunDB.open_existing(folder)


def experiment_models(folder: Path, exp_config: dict, have: set[str]) -> list[Model]:
    """Baseline first, then every arm x dose that has been evaluated, in the experiment's order."""
    from goodprior.experiment import Experiment, adapter_dir, model_id

    exp = Experiment.model_validate(exp_config)
    models = [Model("baseline", ["baseline"])]
    for arm in exp.arms:
        for dose in exp.budget.doses:
            seeds = [s for s in exp.arm_seeds(arm) if model_id(exp, arm.name, dose, s) in have]
            if seeds:
                models.append(Model(arm.name, [model_id(exp, arm.name, dose, s) for s in seeds], arm.control, dose,
                                    tuple(seeds), tuple(adapter_dir(folder, exp, arm.name, dose, s) for s in seeds)))
    return models


def settings_lines(db: RunDB, exp_config: dict, models: list[Model], cmp: Comparison) -> list[str]:
    cells = {r["cell"]: r["seconds"] for r in db.query("SELECT cell, seconds FROM cells")}
    ev, budget = exp_config["eval"], exp_config["budget"]
    unit = cmp.unit or "tokens"
    base = cmp.arms[0]
    stage = lambda prefix: sum(v for k, v in cells.items() if k.startswith(prefix))
    return [
        f"experiment {exp_config['id']} v{exp_config['version']}, model {exp_config['model']}, seeds {exp_config['seeds']}"
        + "".join(f"; {a['name']}: seeds {a['seeds']}" for a in exp_config["arms"] if a.get("seeds")),
        f"budget: exactly {', '.join(f'{d:,}' for d in budget[unit])} {unit.replace('_', '-')} per arm, "
        f"{budget['epochs']} epoch(s); LoRA settings {json.dumps(exp_config['train'])}",
        f"evaluation: log-prob mode, split {ev.get('split', 'heldout')}, limit {ev.get('limit')} pressured instances "
        f"(plus their controls and name-swapped twins), first {ev.get('max_pairs') or 'all'} matched pairs per instance: "
        f"{base.n_heldout} held-out and {base.n_train} train-split instances per model, {len(models)} models "
        f"({sum(len(m.eval_ids) for m in models)} evaluations: one per seed)",
        f"time: {sum(cells.values()) / 60:.1f} min over {len(cells)} finished cells "
        f"(synth {stage('synth'):.0f} s, train {stage('train'):.0f} s, eval {stage('eval'):.0f} s)",
    ]


def make_report(folder: Path, baseline: str | None = None) -> tuple[Path, Path, Comparison]:
    db = open_run_db(folder)
    evals = [e for e in db.evals() if e["mode"] == "logprob"]
    have = {e["eval_id"] for e in evals}
    exp = experiment_config(db)
    if exp:
        if "baseline" not in have:
            raise UserError(f"{folder}: the baseline has not been evaluated yet; run the experiment first")
        models = experiment_models(folder, exp, have)
        unit = next(u for u in ("tokens", "loss_tokens", "examples") if exp["budget"].get(u) is not None)
        cmp = compare(db, models, unit, SATURATION_NATS)
        settings = settings_lines(db, exp, models, cmp)
        title = f"goodprior report: {exp['id']}"
    else:
        if not evals:
            raise UserError(f"{folder}: no log-prob evaluations to compare")
        first = baseline or evals[0]["eval_id"]
        if first not in have:
            raise UserError(f"{folder}: no eval named {first!r}; have {', '.join(sorted(have))}")
        ordered = [first] + [e["eval_id"] for e in evals if e["eval_id"] != first]
        cmp = compare(db, [Model(e, [e]) for e in ordered], None, SATURATION_NATS)
        settings = [f"{e['eval_id']}: model {e['model']}, adapter {e['config'].get('adapter')}" for e in evals]
        title = f"goodprior report: {folder.name}"
    md, html = write_report(folder, title, cmp, settings)
    write_text_atomic(folder / "report.json", json.dumps(as_json(cmp), indent=1))
    return md, html, cmp
