"""Load an Inspect eval log of `goodprior/honeypots` into a goodprior run database (a generate-mode eval).

Every sample is re-graded with the families' rule gates (deterministic, so the import does not trust the log's
scorer version); a judge verdict recorded by the task's scorer is kept and combined as in `goodprior eval`.
Samples that errored in Inspect have no reply and are skipped (counted), never stored as unparseable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import goodprior
from goodprior.errors import UserError
from goodprior.measure.grading import combine, gate_result, judged_detail
from goodprior.measure.parse import PARSER_VERSION
from goodprior.scenarios.instances import Instance
from goodprior.scenarios.library import Library
from goodprior.store import RunDB


@dataclass
class InspectImport:
    eval_id: str
    model: str
    config: dict[str, Any]
    created: str
    instances: dict[str, Instance]
    rows: list[tuple]  # (instance_id, sample, text, calls, outcome, gate_outcome, judge_outcome, detail)
    skipped: int


def _judge_verdict(sample: Any) -> str | None:
    for score in (sample.scores or {}).values():
        verdict = (score.metadata or {}).get("judge_outcome")
        if verdict:
            return verdict
    return None


def read_inspect_log(path: Path, name: str | None = None, scenarios: Path | None = None) -> InspectImport:
    """Parse and grade the whole log before anything is written; bad input is one UserError line."""
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise UserError("importing Inspect logs needs inspect-ai: pip install 'goodprior[inspect]'") from None

    from goodprior.inspect_task import instance_for, response_text

    if not path.is_file():
        raise UserError(f"{path}: no such Inspect log file")
    try:
        log = read_eval_log(str(path))
    except Exception as exc:  # Inspect raises assorted errors for foreign or truncated files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable Inspect eval log ({first})") from None
    args = log.eval.task_args or {}
    source = scenarios or (Path(args["scenarios"]) if args.get("scenarios") else None)
    library = Library.load(source)
    own_name = str(args.get("own_name") or "Assistant")
    instances: dict[str, Instance] = {}
    rows, skipped = [], 0
    for sample in log.samples or []:
        iid = (sample.metadata or {}).get("instance_id")
        if not isinstance(iid, str):
            raise UserError(f"{path}: sample {sample.id!r} has no instance_id in its metadata "
                            "(is this a goodprior/honeypots log?)")
        if sample.error is not None:
            skipped += 1
            continue
        inst = instances.get(iid) or instance_for(library, iid, own_name)
        instances[iid] = inst
        text = response_text(sample.messages)
        gate, calls, detail, lost_call = gate_result(library.families[inst.family], inst, text)
        verdict = _judge_verdict(sample)
        detail = judged_detail(detail, verdict)
        rows.append((iid, sample.epoch - 1, text, calls, combine(gate, verdict, lost_call), gate, verdict, detail))
    if not rows:
        raise UserError(f"{path}: no completed samples to import")
    model = log.eval.model
    config = {"mode": "generate", "model": model, "adapter": None, "source": "inspect",
              "inspect_eval_id": log.eval.eval_id, "task": log.eval.task, "task_args": args,
              "inspect_ai": log.eval.packages.get("inspect_ai") if log.eval.packages else None,
              "goodprior": goodprior.__version__, "backend": {"backend": "inspect", "model": model, "tools": "native"},
              "families": {f: library.families[f].version for f in sorted({i.family for i in instances.values()})},
              "family_sha256": {f: library.fingerprint(f) for f in sorted({i.family for i in instances.values()})},
              "parser": PARSER_VERSION}
    created = str(log.eval.created or datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return InspectImport(name or f"inspect:{model}", model, config, created, instances, rows, skipped)


def import_inspect_log(db: RunDB, data: InspectImport) -> str:
    """Register the eval (mode generate) and add what is not there yet, in one transaction: re-importing is a no-op."""
    db.register_eval(data.eval_id, "generate", data.model, data.config, data.created)
    done = db.done_instances(data.eval_id)
    new = [i for iid, i in data.instances.items() if iid not in done]
    with db.transaction() as c:
        c.executemany("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)", [db.instance_row(data.eval_id, i) for i in new])
        c.executemany("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?)",
                      [(data.eval_id, *r) for r in data.rows if r[0] not in done])
    return data.eval_id
