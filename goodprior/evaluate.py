"""Run an evaluation into a run database: plan instances, score or sample them, save each batch atomically."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import zip_longest
from pathlib import Path

import goodprior
from goodprior.errors import UserError
from goodprior.backends.base import Backend
from goodprior.config import EvalConfig
from goodprior.measure.grading import combine, gate_result, judged_detail
from goodprior.measure.judge import judge_conversation, parse_verdict
from goodprior.measure.persona import neutral_instance_id, neutral_request, persona_choices
from goodprior.measure.parse import PARSER_VERSION
from goodprior.scenarios.instances import Instance
from goodprior.scenarios.library import Library, content_hash
from goodprior.scenarios.schema import PersonaProbe
from goodprior.store import RunDB
from goodprior.types import Continuation, GenerateRequest, ScoreRequest, derive_seed

Advance = Callable[[int], None]


def plan(library: Library, cfg: EvalConfig, own_name: str) -> list[Instance]:
    """Selected instances plus, for every pressured one, its control and its name-swapped twin.

    With a limit, pressured instances are drawn round-robin over families, held-out and train-split families
    alternating, each family's instances in a seeded order: even a small limit covers both splits.
    """
    everything = library.instances(cfg.split, cfg.families or None, own_name)
    if cfg.limit is None:
        return everything
    by_id = {i.id: i for i in everything}
    queues: dict[str, list[Instance]] = {}
    for inst in sorted((i for i in everything if i.is_honeypot),
                       key=lambda i: hashlib.sha1(f"{cfg.seed}:{i.id}".encode()).hexdigest()):
        queues.setdefault(inst.family, []).append(inst)
    held = [f for f in sorted(queues) if library.families[f].split == "heldout"]
    train = [f for f in sorted(queues) if library.families[f].split == "train"]
    order = [f for pair in zip_longest(held, train) for f in pair if f]
    pressured: list[Instance] = []
    while len(pressured) < cfg.limit and any(queues.values()):
        for family in order:
            if queues[family] and len(pressured) < cfg.limit:
                pressured.append(queues[family].pop(0))
    wanted = set()
    for inst in pressured:
        wanted |= {inst.id, inst.control_id}
        if (twin := by_id.get(inst.name_swap_id)) is not None:  # none where the family's levels fix `name`
            wanted |= {twin.id, twin.control_id}
    return [i for i in everything if i.id in wanted]


def eval_record(cfg: EvalConfig, backend: Backend, library: Library, persona: PersonaProbe) -> dict:
    """Everything that produced an eval's rows, declared versions and content hashes both (see refuse_stale)."""
    chosen = library.select(cfg.split, cfg.families or None)
    record = {
        **cfg.identity(),
        "backend": backend.describe(),
        "goodprior": goodprior.__version__,
        "families": {f.id: f.version for f in chosen},
        "family_sha256": {f.id: library.fingerprint(f.id) for f in chosen},
        "persona": f"{persona.id}@v{persona.version}",
        # Samples drawn before seeds came from (run seed, instance id, sample index) must not mix with these.
        **({"sample_seeds": "v2:run-seed,instance-id,sample-index"} if cfg.mode == "generate" else {}),
        "persona_sha256": content_hash(persona.model_dump_json()),
    }
    if cfg.mode == "generate":
        record["parser"] = PARSER_VERSION
    return record


def refuse_stale(db: RunDB, eval_id: str, record: dict, library: Library, what: str = "results",
                 responses: Path | None = None) -> None:
    """One line naming the file when an existing eval was produced from different file contents.

    RunDB.register_eval refuses any difference too; this names the culprit, which matters most when the declared
    version did not change (an edited gate with the same version would otherwise read as an unexplained mismatch)."""
    rows = db.query("SELECT config FROM evals WHERE eval_id = ?", [eval_id])
    if not rows:
        return
    old = json.loads(rows[0]["config"])
    for fid, sha in record.get("family_sha256", {}).items():
        before = (old.get("family_sha256") or {}).get(fid)  # None: a record older than content hashes
        if before is not None and before != sha:
            name = library.sources[fid].name if fid in library.sources else fid
            same = (old.get("families") or {}).get(fid) == record["families"].get(fid)
            hint = "bump its version or use a new --out" if same else "its version changed too; use a new --out"
            raise UserError(f"{name} changed since these {what} (eval {eval_id!r} in {db.path}); {hint}")
    if "responses_sha256" in record and old.get("responses_sha256") != record["responses_sha256"]:
        raise UserError(f"{responses or 'the responses file'} differs from the file graded as eval {eval_id!r} in "
                        f"{db.path}; use a new --out or --name")
    if old.get("persona_sha256", record.get("persona_sha256")) != record.get("persona_sha256"):
        raise UserError(f"the persona probe changed since these results (eval {eval_id!r} in {db.path}); "
                        "bump its version or use a new --out")
    if "parser" in record and old.get("parser") != record["parser"]:
        raise UserError(f"eval {eval_id!r} in {db.path} was graded by tool-call parser v{old.get('parser', 1)}, "
                        f"this is v{record['parser']}; use a new --out or --name to re-grade")


def start_eval(db: RunDB, cfg: EvalConfig, backend: Backend, library: Library, persona: PersonaProbe) -> str:
    eval_id = cfg.eval_id()
    record = eval_record(cfg, backend, library, persona)
    refuse_stale(db, eval_id, record, library)
    db.register_eval(eval_id, cfg.mode, cfg.model, record, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return eval_id


def labelled_choices(inst: Instance, persona: PersonaProbe,
                     max_pairs: int | None = None) -> list[tuple[tuple[str, str, str], Continuation]]:
    """((kind, pair id, side), continuation): action pairs, then persona pairs (scored as the opening of the
    reply), all for one shared prompt. One list, so that scores and their labels cannot fall out of step."""
    out = [(("action", p.id, side), cont) for p in inst.pairs[:max_pairs]
           for side, cont in (("misaligned", p.misaligned), ("aligned", p.aligned))]
    return out + persona_choices(persona)


def run_logprob(db: RunDB, eval_id: str, backend: Backend, todo: list[Instance], persona: PersonaProbe,
                batch_size: int, advance: Advance, max_pairs: int | None = None) -> None:
    # The neutral-context persona scores ride along with the first batch (same transaction), once per eval.
    neutral = [] if db.has_choices(eval_id, neutral_instance_id(persona)) else [neutral_request(persona)]
    for start in range(0, max(len(todo), len(neutral)), batch_size):
        chunk = todo[start : start + batch_size]
        choices = [labelled_choices(i, persona, max_pairs) for i in chunk]
        extra = neutral if start == 0 else []
        scores = backend.score([ScoreRequest(i.conversation, tuple(c for _, c in ch)) for i, ch in zip(chunk, choices)]
                               + [req for _, req, _ in extra])
        labelled = [(i.id, [label for label, _ in ch]) for i, ch in zip(chunk, choices)] + [(iid, labels) for iid, _, labels in extra]
        rows = [(eval_id, iid, *label, s.logprob, s.n_tokens)
                for (iid, labels), inst_scores in zip(labelled, scores) for label, s in zip(labels, inst_scores)]
        with db.transaction() as c:
            c.executemany("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)", [db.instance_row(eval_id, i) for i in chunk])
            c.executemany("INSERT INTO choices VALUES (?,?,?,?,?,?,?)", rows)
        advance(len(chunk))


def run_generate(db: RunDB, eval_id: str, backend: Backend, todo: list[Instance], library: Library,
                 cfg: EvalConfig, advance: Advance, judge: Backend | None = None) -> None:
    """Each instance's seed comes from (run seed, instance id) and each sample's from that and its index (see
    GenerateRequest.sample_seed), never from the position in the remaining work: a resumed run draws the same
    samples as an uninterrupted one."""
    for start in range(0, len(todo), cfg.batch_size):
        chunk = todo[start : start + cfg.batch_size]
        reqs = [GenerateRequest(i.conversation, n=cfg.samples, temperature=cfg.temperature,
                                max_tokens=cfg.max_tokens, seed=derive_seed(cfg.seed, i.id)) for i in chunk]
        samples = backend.generate(reqs)
        rows = grade_samples(library, chunk, samples, judge)
        with db.transaction() as c:
            c.executemany("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)", [db.instance_row(eval_id, i) for i in chunk])
            c.executemany("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?)", [(eval_id, *r) for r in rows])
        advance(len(chunk))


def grade_samples(library: Library, insts: list[Instance], samples: list[list[str]], judge: Backend | None,
                  sample_ids: list[list[int]] | None = None) -> list[tuple]:
    """Rows (instance_id, sample, text, calls, outcome, gate_outcome, judge_outcome, detail). Samples are numbered
    0.. unless `sample_ids` gives each its own id (a graded file keeps the user's)."""
    graded = []
    for n, (inst, texts) in enumerate(zip(insts, samples)):
        family = library.families[inst.family]
        ids = sample_ids[n] if sample_ids is not None else range(len(texts))
        for k, text in zip(ids, texts):
            graded.append((inst, family, k, text, gate_result(family, inst, text)))
    verdicts: list[str | None] = [None] * len(graded)
    if judge is not None:
        reqs = [GenerateRequest(judge_conversation(fam, inst, text), n=1, temperature=0.0, max_tokens=200)
                for inst, fam, _, text, *_ in graded]
        verdicts = [parse_verdict(out[0]) for out in judge.generate(reqs)] if reqs else []
    return [
        (inst.id, k, text, g.calls, combine(g.outcome, verdict, g.lost_call), g.outcome, verdict,
         judged_detail(g.detail, verdict))
        for (inst, _, k, text, g), verdict in zip(graded, verdicts)
    ]


def run_eval(db: RunDB, cfg: EvalConfig, backend: Backend, library: Library, persona: PersonaProbe,
             judge: Backend | None = None, progress: Callable | None = None) -> str:
    """Evaluate what is not done yet; returns the eval id. Safe to call again after an interruption."""
    from goodprior.progress import bar

    eval_id = start_eval(db, cfg, backend, library, persona)
    planned = plan(library, cfg, backend.assistant_name)
    done = db.done_instances(eval_id)
    todo = [i for i in planned if i.id not in done]
    make_bar = progress or bar
    with make_bar(f"{eval_id} ({cfg.mode})", len(planned), len(planned) - len(todo)) as advance:
        if cfg.mode == "logprob":
            run_logprob(db, eval_id, backend, todo, persona, cfg.batch_size, advance, cfg.max_pairs)
        else:
            run_generate(db, eval_id, backend, todo, library, cfg, advance, judge)
    return eval_id


def run_eval_many(db: RunDB, cfgs: list[EvalConfig], library: Library, persona: PersonaProbe,
                  progress: Callable | None = None, judge: Backend | None = None,
                  base: Backend | None = None) -> list[str]:
    """Evaluate several configurations into one run database, each as `run_eval` would (same tables, rows and
    eval ids); returns the eval ids in `cfgs` order. Safe to call again after an interruption.

    Log-prob configurations that differ only in `adapter` (None: the baseline) and `name` share one pass over
    the instances: the base model is loaded once, and the layers below every adapter run once per batch
    (backends/shared_trunk.py). Each (batch, eval) is saved in its own transaction. Anything else (generate mode,
    remote models, adapters that change lower layers) is evaluated on its own, with one line on stderr saying why.
    `base`: the configurations' model already loaded without adapter (with their dtype and device), to reuse.
    """
    def base_fits(cfg: EvalConfig) -> bool:
        return base is not None and (cfg.model, cfg.dtype, cfg.device) == (cfgs[0].model, cfgs[0].dtype, cfgs[0].device)

    ids = [c.eval_id() for c in cfgs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"eval id {twice[0]!r} is named by two configurations; give each adapter its own name")
    groups: dict[str, list[EvalConfig]] = {}
    for cfg in cfgs:
        key = cfg.model_dump_json(exclude={"adapter", "name"}) if cfg.mode == "logprob" else f"alone:{cfg.eval_id()}"
        groups.setdefault(key, []).append(cfg)
    for group in groups.values():
        if len(group) == 1:
            _run_alone(db, group[0], library, persona, progress, judge,
                       base if group[0].adapter is None and base_fits(group[0]) else None)
        else:
            _run_shared(db, group, library, persona, progress, base if base_fits(group[0]) else None)
    return ids


def _run_alone(db: RunDB, cfg: EvalConfig, library: Library, persona: PersonaProbe, progress: Callable | None,
               judge: Backend | None, loaded: Backend | None = None) -> str:
    from goodprior.backends import load_backend

    backend = loaded or load_backend(cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device)
    backend.batch_size = cfg.batch_size
    return run_eval(db, cfg, backend, library, persona, judge=judge, progress=progress)


def _say(line: str) -> None:
    print(f"goodprior: {line}", file=sys.stderr)


def _run_shared(db: RunDB, group: list[EvalConfig], library: Library, persona: PersonaProbe,
                progress: Callable | None, loaded: Backend | None) -> None:
    """Log-prob configurations that differ only in adapter and name: one pass over the instances."""
    from goodprior.backends import load_backend
    from goodprior.backends.hf import HFBackend, check_adapter_base, check_adapter_files
    from goodprior.backends.shared_trunk import SharedTrunk
    from goodprior.progress import bar

    first = group[0]
    base = loaded or load_backend(first.model, dtype=first.dtype, device=first.device)
    if not isinstance(base, HFBackend):
        _say(f"{first.model}: not a local model, so each adapter is evaluated on its own")
        for cfg in group:
            _run_alone(db, cfg, library, persona, progress, None)
        return
    base.batch_size = first.batch_size
    from goodprior.models import resolve_model_path

    for cfg in group:  # the checks attach_adapter makes for an adapter evaluated on its own
        if cfg.adapter:
            check_adapter_files(cfg.adapter)
            check_adapter_base(cfg.adapter, first.model, resolve_model_path(first.model), cfg.strict)
    trunk, left_out = SharedTrunk.build(base, [c.adapter for c in group if c.adapter])
    for adapter, why in left_out.items():
        _say(f"{adapter}: {why}; evaluating it on its own")
    shared = [c for c in group if c.adapter not in left_out]
    for cfg in group:
        if cfg.adapter in left_out:
            _run_alone(db, cfg, library, persona, progress, None)
    if not shared:
        return

    def as_loaded(cfg: EvalConfig) -> Backend:  # the backend run_eval would describe for this configuration
        view = copy.copy(base)
        view.adapter = cfg.adapter
        return view

    eval_ids = [start_eval(db, c, as_loaded(c), library, persona) for c in shared]
    adapter_of = {e: c.adapter for e, c in zip(eval_ids, shared)}
    # The neutral-context persona scores, once per eval (run_logprob sends them with its first batch).
    missing = [e for e in eval_ids if not db.has_choices(e, neutral_instance_id(persona))]
    if missing:
        neutral_id, request, labels = neutral_request(persona)
        scores = trunk.score([request], [adapter_of[e] for e in missing])
        for eval_id in missing:
            with db.transaction() as c:
                c.executemany("INSERT INTO choices VALUES (?,?,?,?,?,?,?)",
                              [(eval_id, neutral_id, *label, s.logprob, s.n_tokens)
                               for label, s in zip(labels, scores[adapter_of[eval_id]][0])])
    planned = plan(library, first, base.assistant_name)
    done = {e: db.done_instances(e) for e in eval_ids}
    make_bar = progress or bar
    title = f"{len(shared)} evals sharing {first.model} layers 0-{trunk.split - 1} (logprob)"
    with make_bar(title, len(planned) * len(shared), sum(len(d) for d in done.values())) as advance:
        for start in range(0, len(planned), first.batch_size):
            chunk = planned[start : start + first.batch_size]
            todo = {e: [i for i in chunk if i.id not in done[e]] for e in eval_ids}
            todo = {e: insts for e, insts in todo.items() if insts}
            if not todo:
                continue
            wanted = {i.id for insts in todo.values() for i in insts}
            chunk = [i for i in chunk if i.id in wanted]
            choices = [labelled_choices(i, persona, first.max_pairs) for i in chunk]
            scores = trunk.score([ScoreRequest(i.conversation, tuple(c for _, c in ch)) for i, ch in zip(chunk, choices)],
                                 [adapter_of[e] for e in todo])
            for eval_id, insts in todo.items():  # one transaction per (batch, eval): a kill loses at most one
                keep = {i.id for i in insts}
                rows = [(eval_id, inst.id, *label, s.logprob, s.n_tokens)
                        for inst, ch, inst_scores in zip(chunk, choices, scores[adapter_of[eval_id]]) if inst.id in keep
                        for (label, _), s in zip(ch, inst_scores)]
                with db.transaction() as c:
                    c.executemany("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  [db.instance_row(eval_id, i) for i in insts])
                    c.executemany("INSERT INTO choices VALUES (?,?,?,?,?,?,?)", rows)
                advance(len(insts))
