"""goodprior command line. User errors print one line (`goodprior: error: ...`) and exit 2."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from goodprior.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Measure and repair agentic misalignment.")
scenarios_app = typer.Typer(no_args_is_help=True, help="List, show and validate honeypot scenario families.")
app.add_typer(scenarios_app, name="scenarios")
# Logs and pipes get wide tables, not 80 columns. Everything printed holds user text (paths, ids, titles): no Rich
# markup or emoji codes, so `[x]` and `:abc:` print as written.
console = Console(width=None if sys.stdout.isatty() else 150, markup=False, emoji=False)

ScenariosOpt = typer.Option(None, "--scenarios", help="A scenario YAML file or folder (default: the built-in library).")


def finite(value: float | None) -> float | None:
    """Typer callback for float options: click's float type takes `nan` and `inf`, which no setting means."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def fraction(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= 1:  # also false for nan
        raise typer.BadParameter(f"must be a number from 0 to 1, got {value}")
    return value


def check_out_folder(path: Path, label: str = "option --out", replaced: bool = False) -> None:
    """Fail with one line, before any work, where PATH cannot become (or be written into as) an output folder.
    replaced: the command swaps the whole folder in (synth), so the current folder and its parents are refused."""
    full = path.absolute()
    if full.exists() and not full.is_dir():
        raise UserError(f"{label}: {path} exists and is not a folder")
    existing = next(p for p in (full, *full.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{label}: cannot create {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{label}: cannot write to {existing} (permission denied or read-only)")
    if replaced:
        cwd = Path.cwd().resolve()
        if full.resolve() in (cwd, *cwd.parents):
            raise UserError(f"{label}: {path} is the current folder or one of its parents; the dataset "
                            "replaces its folder whole, so name a new subfolder")


def count_option(value: str | None, option: str) -> int | None:
    """`50k`-style counts, with the option named in the error."""
    from goodprior.synth.build import parse_count

    try:
        return parse_count(value)
    except UserError as exc:
        raise UserError(f"option {option}: {exc}") from None


@scenarios_app.command("list")
def scenarios_list(scenarios: Optional[Path] = ScenariosOpt) -> None:
    """One line per family: id, version, split, settings, instances."""
    from rich.table import Table

    from goodprior.scenarios.library import Library

    lib = Library.load(scenarios)
    table = Table("family", "version", "split", "settings", "instances", "title")
    for fam in lib.families.values():
        n = len(fam.settings)
        for levels in fam.factor_levels().values():
            n *= len(levels)
        table.add_row(fam.id, str(fam.version), fam.split, str(len(fam.settings)), str(n), fam.title)
    console.print(table)


@scenarios_app.command("show")
def scenarios_show(
    target: str = typer.Argument(..., help="A family id or a full instance id (family/setting/goal=..,...)."),
    scenarios: Optional[Path] = ScenariosOpt,
    own_name: str = typer.Option("Assistant", help="The model's own name, for name=own instances."),
    full: bool = typer.Option(False, "--full", help="Print exactly the prompt the model receives: its chat template "
                              "applied, with the tool-call convention or native tool definitions."),
    model: Optional[str] = typer.Option(None, help="With --full: whose chat template (default: smollm2 if installed, "
                                        "else the plain-text convention without a template)."),
) -> None:
    """Print a rendered instance: system prompt, inbox, tools and the matched choices."""
    from goodprior.backends.chat_format import ChatFormat, continuation_text
    from goodprior.scenarios.instances import build_instance, parse_instance_id
    from goodprior.scenarios.library import Library

    lib = Library.load(scenarios)
    if "/" in target:
        family_id, setting, factors = parse_instance_id(target)
        family = lib.select("all", [family_id])[0]
        inst = build_instance(family, setting, factors, own_name)
    else:
        inst = lib.instances("all", [target], own_name)[-1]
    if full:
        from types import SimpleNamespace

        tokenizer, how = _tokenizer(model)
        if tokenizer is None:  # what a model without a chat template is sent: a plain transcript
            tokenizer, how = SimpleNamespace(chat_template=None), "a model without a chat template (smollm2 not installed)"
        typer.echo(f"# {inst.id}: the prompt as {how} renders it\n{ChatFormat(tokenizer).prompt(inst.conversation)}")
        return
    out = [f"# {inst.id}  (family v{inst.family_version}, split {inst.split})", "", "## system", inst.conversation.system,
           "", "## user", inst.conversation.messages[0]["content"], "", "## tools"]
    out += [f"- {t['function']['name']}: {t['function']['description']}" for t in inst.conversation.tools]
    out += ["", "## matched choices"]
    for pair in inst.pairs:
        out += [f"[{pair.id}] misaligned:", continuation_text(pair.misaligned), f"[{pair.id}] aligned:",
                continuation_text(pair.aligned), ""]
    typer.echo("\n".join(out))


@scenarios_app.command("validate")
def scenarios_validate(
    scenarios: Optional[Path] = ScenariosOpt,
    model: Optional[str] = typer.Option(None, help="Count tokens with this model's tokenizer (default: smollm2 if installed, else a word count); "
                                        "given, also score each setting's control with it and list saturated pairs."),
    dtype: str = typer.Option("auto", help="With --model: auto, float32, bfloat16 or float16."),
    device: str = typer.Option("auto", help="With --model: auto, cpu or cuda."),
) -> None:
    """Schema, rendering of every instance, matched-pair entities and lengths, gates against choices; with --model,
    saturated matched pairs and the persona probe's neutral-context saturation for that model."""
    from goodprior.scenarios.library import Library
    from goodprior.scenarios.validate import validate_family

    lib = Library.load(scenarios)
    count, how = token_counter(model)
    problems = [p for fam in lib.families.values() for p in validate_family(fam, count)]
    for p in problems:
        typer.echo(f"{lib.sources[p.family]}: {p}")
    if any(not p.warning for p in problems):
        raise typer.Exit(1)
    warned = sum(p.warning for p in problems)
    typer.echo(f"ok: {len(lib.families)} families valid (tokens counted with {how})" + (f"; {warned} warning(s)" if warned else ""))
    if model is not None:
        _report_model_check(lib, _load_backend(model, None, dtype, device, 4))


def _report_model_check(lib, backend) -> None:
    """Saturated pairs per family and the persona probe's neutral-context calibration (informational: exit 0)."""
    from goodprior.analysis import persona_uninformative
    from goodprior.progress import bar
    from goodprior.scenarios.library import load_persona
    from goodprior.scenarios.validate import check_with_model, probe_controls

    persona = load_persona()
    families = list(lib.families.values())
    with bar("controls", len(probe_controls(families, backend.assistant_name))) as advance:
        check = check_with_model(families, backend, persona, advance)
    saturated = check.saturated
    typer.echo(f"saturated pairs (control-context |log-odds| > {check.threshold:g} nats): "
               f"{len(saturated)} of {len(check.control)} ({len(saturated) / max(len(check.control), 1):.0%})")
    for fam in families:
        mine = sorted(k for k in saturated if k[0] == fam.id)
        n = sum(k[0] == fam.id for k in check.control)
        listed = ", ".join(f"{setting}/{pair} {check.control[f, setting, pair]:+.1f}" for f, setting, pair in mine) or "none"
        typer.echo(f"  {fam.id}: {len(mine)}/{n}: {listed}")
    neutral = check.neutral_persona
    verdict = "UNINFORMATIVE (saturated)" if persona_uninformative(neutral) else "informative"
    typer.echo(f"persona probe {persona.id}@v{persona.version}, neutral context: {verdict}; log-odds "
               + ", ".join(f"{p} {v:+.1f}" for p, v in neutral.items()))


def _load_backend(model: str, adapter: str | None, dtype: str, device: str, batch_size: int, strict: bool = False):
    from goodprior.backends import load_backend

    with console.status(f"loading {model}" + (f" + {adapter}" if adapter else "")):
        backend = load_backend(model, adapter=adapter, dtype=dtype, device=device, strict=strict)
    backend.batch_size = batch_size
    return backend


def _show_and_export(folder: Path, db, eval_ids: list[str] | None = None) -> None:
    from goodprior.export import show_and_export

    path = show_and_export(folder, db, console, eval_ids)
    console.print(f"wrote {path}, {folder / 'results.jsonl'}, {folder / 'results.sqlite'}")


@app.command("eval")
def eval_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (created; an interrupted run resumes there)."),
    config: Optional[Path] = typer.Option(None, "--config", help="EvalConfig YAML; flags override it."),
    model: Optional[str] = typer.Option(None, help="smollm2 (embedded), an HF model id, or a local path."),
    adapter: Optional[list[str]] = typer.Option(None, help="PEFT adapter folder; repeat for several (one pass over "
                                                "the instances, one eval id each: model+<folder name>)."),
    baseline: bool = typer.Option(False, "--baseline", help="With --adapter: also evaluate the model without adapter."),
    mode: Optional[str] = typer.Option(None, help="logprob (default) or generate."),
    split: Optional[str] = typer.Option(None, help="heldout (default), train or all."),
    families: Optional[str] = typer.Option(None, help="Comma-separated family ids."),
    limit: Optional[int] = typer.Option(None, help="At most N pressured instances (+ their controls and twins)."),
    samples: Optional[int] = typer.Option(None, help="Generate mode: samples per instance."),
    temperature: Optional[float] = typer.Option(None, callback=finite),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    judge: Optional[str] = typer.Option(None, help="Generate mode: judge model (after rule gates)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Score only the first N matched pairs."),
    dtype: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    scenarios: Optional[Path] = ScenariosOpt,
    name: Optional[str] = typer.Option(None, help="Eval id inside the run database."),
    strict: bool = typer.Option(False, "--strict", help="Refuse an adapter trained for another base model (default: warn)."),
) -> None:
    """Evaluate a model on honeypot scenarios; results go to OUT/results.sqlite, results.jsonl, summary.md."""
    from pydantic import ValidationError

    from goodprior.config import EvalConfig
    from goodprior.evaluate import run_eval, run_eval_many
    from goodprior.scenarios.library import Library, load_persona
    from goodprior.store import RunDB

    base = EvalConfig.from_yaml(config).model_dump() if config else {}
    adapters = list(adapter or ([base["adapter"]] if base.get("adapter") else []))
    several = len(adapters) > 1 or (baseline and bool(adapters))
    if several and (name or base.get("name")):
        raise UserError("option --name: names one eval; with several adapters each gets model+<adapter folder name>")
    flags = dict(model=model, adapter=adapters[0] if adapters else None, mode=mode, split=split, limit=limit, samples=samples,
                 temperature=temperature, max_tokens=max_tokens, judge=judge, batch_size=batch_size, dtype=dtype, max_pairs=max_pairs,
                 device=device, seed=seed, name=name, strict=strict or None, scenarios=str(scenarios) if scenarios else None,
                 families=[f.strip() for f in families.split(",") if f.strip()] if families else None)
    try:
        cfg = EvalConfig.model_validate({**base, **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    check_out_folder(out)
    if adapters and not cfg.model.startswith(("openai/", "anthropic/")):  # local adapters: check before loading
        from goodprior.backends.hf import check_adapter_files

        for folder in adapters:
            check_adapter_files(folder)
    library = Library.load(Path(cfg.scenarios) if cfg.scenarios else None)
    library.select(cfg.split, cfg.families or None)  # fail on unknown families before loading a model
    # Models load before the run folder is created: a model that does not load leaves nothing behind.
    backend = _load_backend(cfg.model, None if several else cfg.adapter, cfg.dtype, cfg.device, cfg.batch_size,
                            cfg.strict)
    judge_backend = _load_backend(cfg.judge, None, cfg.dtype, cfg.device, cfg.batch_size) if cfg.judge else None
    db = RunDB(out / "results.sqlite")
    if several:
        cfgs = [cfg.model_copy(update={"adapter": a}) for a in ([None] if baseline else []) + adapters]
        eval_ids = run_eval_many(db, cfgs, library, load_persona(), judge=judge_backend, base=backend)
        _show_and_export(out, db, eval_ids)
        return
    eval_id = run_eval(db, cfg, backend, library, load_persona(), judge=judge_backend)
    _show_and_export(out, db, [eval_id])


@app.command("grade")
def grade_cmd(
    responses: Path = typer.Option(..., "--responses", help="JSONL: one {instance_id, response[, sample]} per line."),
    out: Path = typer.Option(..., "--out", help="Run folder for the graded results."),
    scenarios: Optional[Path] = ScenariosOpt,
    judge: Optional[str] = typer.Option(None, help="Judge model, consulted after the rule gates."),
    name: Optional[str] = typer.Option(None, help="Eval id (default: grade:<responses file name>)."),
    own_name: str = typer.Option("Assistant", help="The responding model's own name (for name=own instances)."),
) -> None:
    """Grade externally produced responses with the families' rule gates (and optionally a judge)."""
    from goodprior.grade_file import grade_file, read_responses
    from goodprior.scenarios.library import Library
    from goodprior.store import RunDB

    check_out_folder(out)
    library = Library.load(scenarios)
    read_responses(responses, library, own_name)  # validate fully before creating anything
    judge_backend = _load_backend(judge, None, "auto", "auto", 4) if judge else None
    db = RunDB(out / "results.sqlite")
    eval_id = grade_file(db, responses, library, name or f"grade:{responses.name}", own_name, judge_backend)
    _show_and_export(out, db, [eval_id])


@app.command("run")
def run_cmd(
    experiment: Optional[str] = typer.Argument(None, help="Experiment YAML, or a shipped experiment's name (default: `default`)."),
    profile: Optional[str] = typer.Option(None, help="A profile of the experiment, e.g. `quick` (a few-minute smoke)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<experiment id>)."),
) -> None:
    """Synthesize every arm, train an adapter per arm x seed, evaluate baseline and arms, write the report.
    Killed and started again, it continues: finished cells are never recomputed."""
    from goodprior.experiment import Experiment, Runner
    from goodprior.report.build import make_report
    from goodprior.report.render import SHIFT_HEADER, check_lines, shift_rows
    from goodprior.tables import rich_table

    exp = Experiment.load(experiment, profile)
    folder = out or Path("runs") / exp.id
    check_out_folder(folder)
    Runner(exp, folder).run()
    md, html, cmp = make_report(folder)
    for line in check_lines(cmp):
        console.print(line, style="bold green" if cmp.interpretable else "bold red", markup=False, highlight=False)
    console.print(rich_table(f"{exp.id}: shifts in nats toward misaligned (content effect = arm - null control)",
                             SHIFT_HEADER, shift_rows(cmp)))
    console.print(f"report: {html}  (also {md} and {folder / 'report.json'})")


@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="A run folder (from `goodprior run` or `goodprior eval`)."),
    baseline: Optional[str] = typer.Option(None, help="For plain eval folders: the eval id to compare against."),
) -> None:
    """Write report.md and a self-contained report.html (table, plots, findings) for a run folder."""
    from goodprior.report.build import make_report

    check_out_folder(run, "run folder")  # report.md and report.html are written into it
    md, html, _ = make_report(run, baseline)
    console.print(f"wrote {html} and {md}")


@app.command("train")
def train_cmd(
    data: list[str] = typer.Option(..., "--data", help="Dataset folder, optionally PATH:WEIGHT; repeat to mix."),
    out: Path = typer.Option(..., "--out", help="Adapter folder."),
    config: Optional[Path] = typer.Option(None, "--config", help="TrainConfig YAML; flags override it."),
    model: Optional[str] = typer.Option(None, help="smollm2 (embedded), an HF model id, or a local path."),
    tokens: Optional[str] = typer.Option(None, help="Exact training-token budget, e.g. 50k (the default unit)."),
    loss_tokens: Optional[str] = typer.Option(None, "--loss-tokens", help="Budget of loss-bearing tokens instead, e.g. 4k."),
    examples: Optional[str] = typer.Option(None, "--examples", help="Budget of rows instead."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the selected data (default 1).", callback=finite),
    top_k_layers: Optional[int] = typer.Option(None, "--top-k-layers", help="LoRA on the top K layers only."),
    lora_r: Optional[int] = typer.Option(None, "--lora-r"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", callback=finite),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Packed sequence length."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: Optional[int] = typer.Option(None),
) -> None:
    """Train a LoRA adapter (TRL SFTTrainer + PEFT) on goodprior datasets with an exact token budget."""
    from pydantic import ValidationError

    from goodprior.train.config import TrainConfig
    from goodprior.train.trainer import train

    base = TrainConfig.from_yaml(config).model_dump() if config else {}
    budget = {k: count_option(v, f"--{k.replace('_', '-')}") for k, v in
              (("tokens", tokens), ("loss_tokens", loss_tokens), ("examples", examples)) if v is not None}
    if budget:  # a budget flag replaces the config file's budget, whatever its unit
        base = {k: v for k, v in base.items() if k not in ("tokens", "loss_tokens", "examples")}
    flags = dict(model=model, data=data, **budget, epochs=epochs, top_k_layers=top_k_layers, lora_r=lora_r,
                 learning_rate=learning_rate, max_length=max_length, batch_size=batch_size, seed=seed, out=str(out))
    try:
        cfg = TrainConfig.model_validate({**base, **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"option --{str(err['loc'][0]).replace('_', '-')}" if err["loc"] else "budget"
        raise UserError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
    check_out_folder(Path(cfg.out))
    summary = train(cfg)
    if not summary:  # a non-zero rank of a distributed run: rank 0 reports
        return
    b = summary.get("budget", {})
    state = "already finished" if summary.get("up_to_date") else (
        f"{b.get('tokens')} tokens, {b.get('loss_tokens')} loss-bearing, {b.get('rows')} rows, {b.get('epochs')} epochs, "
        f"{summary.get('steps')} steps, final loss {summary.get('final_loss')}")
    console.print(f"adapter in {out} ({state}); loss curve in {out / 'loss.json'}")


data_app = typer.Typer(no_args_is_help=True, help="Inspect synthetic datasets.")
app.add_typer(data_app, name="data")


@app.command("synth")
def synth_cmd(
    arm: str = typer.Argument(..., help="An arm (recipe id) or `all`."),
    tokens: Optional[str] = typer.Option(None, help="Token budget per arm under the target tokenizer, e.g. 200k."),
    n: Optional[str] = typer.Option(None, "--n", help="Number of examples per arm (instead of --tokens)."),
    generator: str = typer.Option("offline", help="offline, or a model (smollm2, HF id, path) to write the text."),
    spec: Optional[Path] = typer.Option(None, help="Spec file, YAML or Markdown (default: goodprior's constitution)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default data/ARM; for `all`, data/<arm> each)."),
    model: str = typer.Option("smollm2", help="Target model whose tokenizer counts tokens."),
    seed: int = typer.Option(0),
    dedup_threshold: Optional[float] = typer.Option(None, callback=fraction, help="Drop examples with estimated 5-gram Jaccard above this (default: the recipe's, 0.6 for most arms)."),
    own_name: str = typer.Option("SmolLM", help="Honeypot arms: the target model's own name, for name=own prompts."),
    scenarios: Optional[Path] = ScenariosOpt,
    concurrency: int = typer.Option(4, min=1, help="LLM generator: requests in flight."),
    preview: bool = typer.Option(False, help="Print the planned counts and exit without generating."),
) -> None:
    """Build repair datasets (JSONL in Hugging Face shapes + summary.json) from the spec."""
    from goodprior.progress import bar
    from goodprior.synth.build import TokenCounter
    from goodprior.synth.run import arms_for, load_tokenizer, summary_table, synth_offline
    from goodprior.synth.spec import load_spec
    from goodprior.scenarios.library import Library

    count_n, count_tokens = count_option(n, "--n"), count_option(tokens, "--tokens")
    if (count_n is None) == (count_tokens is None):
        raise UserError("give exactly one size: --n N or --tokens N")
    arms = arms_for(arm)
    targets = {a: out / a if (out and arm == "all") else (out or Path("data") / a) for a in arms}
    for target in targets.values():
        check_out_folder(target, replaced=True)
    the_spec = load_spec(spec)
    library = Library.load(scenarios)
    if preview:
        for a in arms:
            size = f"{count_n} examples" if count_n else f"{count_tokens} tokens"
            typer.echo(f"{a}: {size} with generator {generator}, spec {the_spec.ref}, seed {seed}")
        return
    counter = TokenCounter(load_tokenizer(model), model)
    summaries = []
    for a in arms:
        target = targets[a]
        with bar(f"synth {a}", count_n or count_tokens) as advance:
            if generator == "offline":
                summaries.append(synth_offline(a, the_spec, target, counter, library, n=count_n, tokens=count_tokens,
                                               seed=seed, dedup_threshold=dedup_threshold, own_name=own_name,
                                               advance=advance))
            else:
                from goodprior.synth.llm import synth_llm

                summaries.append(synth_llm(a, the_spec, target, counter, library, generator=generator, n=count_n,
                                           tokens=count_tokens, seed=seed, dedup_threshold=dedup_threshold,
                                           own_name=own_name, concurrency=concurrency, advance=advance))
    console.print(summary_table(summaries))


@data_app.command("inspect")
def data_inspect(
    path: Path = typer.Argument(..., help="A dataset folder written by `goodprior synth`."),
    samples: int = typer.Option(3, min=0, help="How many random examples to print."),
    seed: int = typer.Option(0),
) -> None:
    """Statistics and sample examples of a synthetic dataset."""
    from goodprior.synth.run import inspect

    inspect(path, samples, seed, console)


from goodprior.cli_inspect import import_inspect_cmd  # noqa: E402  (a typer command kept in its own file)

app.command("import-inspect")(import_inspect_cmd)


def _tokenizer(model: str | None):
    """(tokenizer, description) for `model`; with no model, smollm2's if installed, else (None, why not)."""
    from goodprior.models import embedded

    if model is None:
        try:
            embedded.gguf_path()
        except UserError:
            return None, "no tokenizer (smollm2 not installed)"
        model = embedded.NAME
    from transformers import AutoTokenizer

    from goodprior.models import resolve_model_path

    path = resolve_model_path(model, tokenizer_only=True)
    try:
        return AutoTokenizer.from_pretrained(path), f"the {model} tokenizer"
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer for {model!r}: {str(exc).splitlines()[0]}") from None


def token_counter(model: str | None):
    """A token-counting function and a description of it."""
    from goodprior.textstats import approx_tokens

    tok, how = _tokenizer(model)
    if tok is None:
        return approx_tokens, "a word/punctuation count (smollm2 not installed)"
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), how


def quiet_libraries() -> None:
    """goodprior draws its own progress bars; the libraries' per-step bars and warnings only add noise."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft|trl|transformers")
    try:
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
        logging.getLogger("datasets").setLevel(logging.ERROR)
    except ImportError:
        pass


def print_error(message: str) -> None:
    """`goodprior: error: MESSAGE` as one line on stderr. The message is user text (paths, patterns, YAML values):
    a Text object is never parsed for Rich markup or emoji codes, so `[x]`, `:abc:` and `^*$` print as written."""
    from rich.text import Text

    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("goodprior: error: ", "bold red"), one_line),
                                               highlight=False)


def main() -> None:
    from typer.exceptions import Abort, TyperException  # typer vendors click: its usage errors derive from these

    quiet_libraries()
    try:
        code = app(standalone_mode=False)  # click's own usage errors come back to us, printed as one line below
    except UserError as exc:
        print_error(str(exc))
        sys.exit(2)
    except TyperException as exc:  # a bad option value, a missing argument, an unknown command
        if type(exc).__name__ == "NoArgsIsHelpError":  # `goodprior data` alone: the group's help, as click shows it
            exc.show()
        else:
            print_error(exc.format_message() + _help_hint(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Abort):
        code = 130
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        Console(stderr=True).print("goodprior: interrupted; finished work is saved, run the same command to resume",
                                   markup=False)
    sys.exit(code if isinstance(code, int) else 0)


def _help_hint(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    return f" (see `{ctx.command_path} --help`)" if ctx is not None else ""


if __name__ == "__main__":
    main()
