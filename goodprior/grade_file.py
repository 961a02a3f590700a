"""Grade externally produced responses (JSONL: instance_id + response) with the same gates and judge."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import goodprior
from goodprior.backends.base import Backend
from goodprior.errors import UserError
from goodprior.evaluate import grade_samples, refuse_stale
from goodprior.measure.parse import PARSER_VERSION
from goodprior.scenarios.instances import Instance, build_instance, parse_instance_id
from goodprior.scenarios.library import Library, content_hash
from goodprior.store import RunDB


def read_responses(path: Path, library: Library, own_name: str) -> dict[str, tuple[Instance, list[tuple[int, str]]]]:
    """Validate the whole file before anything is written: one clear line for the first bad row."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read responses ({exc.strerror})") from None
    grouped: dict[str, list[tuple[int, str]]] = defaultdict(list)
    instances: dict[str, Instance] = {}
    for n, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}:{n}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: expected a JSON object")
        for key in ("instance_id", "response"):
            if not isinstance(row.get(key), str):
                raise UserError(f"{path}:{n}: field '{key}' missing or not a string")
        iid = row["instance_id"]
        if iid not in instances:
            try:
                family_id, setting, factors = parse_instance_id(iid)
            except UserError as exc:
                raise UserError(f"{path}:{n}: field 'instance_id': {exc}") from None
            if family_id not in library.families:
                raise UserError(f"{path}:{n}: field 'instance_id': unknown family {family_id!r}")
            try:
                instances[iid] = build_instance(library.families[family_id], setting, factors, own_name)
            except (UserError, KeyError) as exc:
                raise UserError(f"{path}:{n}: field 'instance_id': {exc}") from None
            if instances[iid].id != iid:
                raise UserError(f"{path}:{n}: field 'instance_id': not canonical, expected {instances[iid].id!r}")
        sample = row.get("sample", len(grouped[iid]))
        if type(sample) is not int or sample < 0:  # bool is an int subclass; mixed types would not sort
            raise UserError(f"{path}:{n}: field 'sample' must be a whole number >= 0, got {json.dumps(sample)}")
        if any(s == sample for s, _ in grouped[iid]):
            raise UserError(f"{path}:{n}: field 'sample': {sample} appears twice for instance {iid!r}")
        grouped[iid].append((sample, row["response"]))
    if not grouped:
        raise UserError(f"{path}: no responses in file")
    return {iid: (instances[iid], sorted(rows)) for iid, rows in grouped.items()}


def grade_file(db: RunDB, responses: Path, library: Library, eval_id: str, own_name: str,
               judge: Backend | None = None) -> str:
    todo = read_responses(responses, library, own_name)
    families = sorted({i.family for i, _ in todo.values()})
    config = {"mode": "generate", "model": f"external:{responses.name}", "judge": judge.describe() if judge else None,
              "goodprior": goodprior.__version__, "own_name": own_name,
              "families": {f: library.families[f].version for f in families},
              "family_sha256": {f: library.fingerprint(f) for f in families},
              "parser": PARSER_VERSION, "responses_sha256": content_hash(responses.read_bytes())}
    refuse_stale(db, eval_id, config, library, "grades", responses)
    db.register_eval(eval_id, "generate", config["model"], config, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    done = db.done_instances(eval_id)
    pending = [v for iid, v in todo.items() if iid not in done]
    for start in range(0, len(pending), 16):
        chunk = pending[start : start + 16]
        rows = grade_samples(library, [i for i, _ in chunk], [[t for _, t in given] for _, given in chunk], judge,
                             [[k for k, _ in given] for _, given in chunk])
        with db.transaction() as c:
            c.executemany("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)", [db.instance_row(eval_id, i) for i, _ in chunk])
            c.executemany("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?)", [(eval_id, *r) for r in rows])
    return eval_id
