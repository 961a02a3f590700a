"""Assemble the report of a run folder from its database (and, for experiments, its adapters)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from goodprior.errors import UserError
from goodprior.report.compare import ArmResult, compare
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


def make_report(folder: Path, baseline: str | None = None) -> tuple[Path, Path, list[ArmResult]]:
    from goodprior.experiment import adapter_dir, eval_id

    db = open_run_db(folder)
    evals = [e for e in db.evals() if e["mode"] == "logprob"]
    have = {e["eval_id"] for e in evals}
    exp = experiment_config(db)
    adapters: dict[str, list[Path]] = {}
    if exp:
        arms = [{"name": "baseline", "eval_ids": ["baseline"], "seeds": []}]
        for a in exp["arms"]:
            ids = [eval_id(a["name"], s) for s in exp["seeds"] if eval_id(a["name"], s) in have]
            if ids:
                arms.append({"name": a["name"], "control": a.get("control", False), "eval_ids": ids, "seeds": exp["seeds"]})
                adapters[a["name"]] = [adapter_dir(folder, a["name"], s) for s in exp["seeds"]]
        if "baseline" not in have:
            raise UserError(f"{folder}: the baseline has not been evaluated yet; run the experiment first")
        cells = {r["cell"]: r["seconds"] for r in db.query("SELECT cell, seconds FROM cells")}
        ev = exp["eval"]
        settings = [
            f"experiment {exp['id']} v{exp['version']}, model {exp['model']}, seeds {exp['seeds']}",
            f"training: exactly {exp['tokens']:,} tokens per arm; LoRA settings {json.dumps(exp['train'])}",
            f"evaluation: log-prob mode, split {ev.get('split', 'heldout')}, limit {ev.get('limit')} pressured "
            f"instances (plus their controls and name-swapped twins), first {ev.get('max_pairs') or 'all'} matched pairs per instance",
            f"time: {sum(cells.values()) / 60:.1f} min over {len(cells)} finished cells "
            f"(synth {sum(v for k, v in cells.items() if k.startswith('synth')):.0f} s, "
            f"train {sum(v for k, v in cells.items() if k.startswith('train')):.0f} s, "
            f"eval {sum(v for k, v in cells.items() if k.startswith('eval')):.0f} s)",
        ]
        title = f"goodprior report: {exp['id']}"
    else:
        if not evals:
            raise UserError(f"{folder}: no log-prob evaluations to compare")
        first = baseline or evals[0]["eval_id"]
        if first not in have:
            raise UserError(f"{folder}: no eval named {first!r}; have {', '.join(sorted(have))}")
        ordered = [first] + [e["eval_id"] for e in evals if e["eval_id"] != first]
        arms = [{"name": e, "eval_ids": [e]} for e in ordered]
        settings = [f"{e['eval_id']}: model {e['model']}, adapter {e['config'].get('adapter')}" for e in evals]
        title = f"goodprior report: {folder.name}"
    results = compare(db, arms, adapters)
    md, html = write_report(folder, title, results, settings)
    return md, html, results
