"""goodprior command line. User errors print one line (`goodprior: error: ...`) and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from goodprior.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Measure and repair agentic misalignment.")
scenarios_app = typer.Typer(no_args_is_help=True, help="List, show and validate honeypot scenario families.")
app.add_typer(scenarios_app, name="scenarios")
console = Console(width=None if sys.stdout.isatty() else 150)  # logs and pipes get wide tables, not 80 columns

ScenariosOpt = typer.Option(None, "--scenarios", help="A scenario YAML file or folder (default: the built-in library).")


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
) -> None:
    """Print a rendered instance: system prompt, inbox, tools and the matched choices."""
    from goodprior.backends.chat_format import continuation_text
    from goodprior.scenarios.instances import build_instance, parse_instance_id
    from goodprior.scenarios.library import Library

    lib = Library.load(scenarios)
    if "/" in target:
        family_id, setting, factors = parse_instance_id(target)
        family = lib.select("all", [family_id])[0]
        inst = build_instance(family, setting, factors, own_name)
    else:
        inst = lib.instances("all", [target], own_name)[-1]
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
    model: Optional[str] = typer.Option(None, help="Count tokens with this model's tokenizer (default: smollm2 if installed, else a word count)."),
) -> None:
    """Schema, rendering of every instance, matched-pair entities and lengths, gates against choices."""
    from goodprior.scenarios.library import Library
    from goodprior.scenarios.validate import validate_family

    lib = Library.load(scenarios)
    count, how = token_counter(model)
    problems = [p for fam in lib.families.values() for p in validate_family(fam, count)]
    for p in problems:
        typer.echo(f"{lib.sources[p.family]}: {p}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(lib.families)} families valid (tokens counted with {how})")


def _load_backend(model: str, adapter: str | None, dtype: str, device: str, batch_size: int):
    from goodprior.backends import load_backend

    with console.status(f"loading {model}" + (f" + {adapter}" if adapter else "")):
        backend = load_backend(model, adapter=adapter, dtype=dtype, device=device)
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
    temperature: Optional[float] = typer.Option(None),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    judge: Optional[str] = typer.Option(None, help="Generate mode: judge model (after rule gates)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Score only the first N matched pairs."),
    dtype: Optional[str] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    scenarios: Optional[Path] = ScenariosOpt,
    name: Optional[str] = typer.Option(None, help="Eval id inside the run database."),
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
                 device=device, seed=seed, name=name, scenarios=str(scenarios) if scenarios else None,
                 families=[f.strip() for f in families.split(",") if f.strip()] if families else None)
    try:
        cfg = EvalConfig.model_validate({**base, **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    library = Library.load(Path(cfg.scenarios) if cfg.scenarios else None)
    library.select(cfg.split, cfg.families or None)  # fail on unknown families before loading a model
    # Models load before the run folder is created: a model that does not load leaves nothing behind.
    backend = _load_backend(cfg.model, None if several else cfg.adapter, cfg.dtype, cfg.device, cfg.batch_size)
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

    library = Library.load(scenarios)
    read_responses(responses, library, own_name)  # validate fully before creating anything
    judge_backend = _load_backend(judge, None, "auto", "auto", 4) if judge else None
    db = RunDB(out / "results.sqlite")
    eval_id = grade_file(db, responses, library, name or f"grade:{responses.name}", own_name, judge_backend)
    _show_and_export(out, db, [eval_id])


@app.command("run")
def run_cmd(
    experiment: Optional[Path] = typer.Argument(None, help="Experiment YAML (default: the built-in default experiment)."),
    profile: Optional[str] = typer.Option(None, help="A profile of the experiment, e.g. `quick` (a <=5-minute smoke)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<experiment id>)."),
) -> None:
    """Synthesize every arm, train an adapter per arm x seed, evaluate baseline and arms, write the report.
    Killed and started again, it continues: finished cells are never recomputed."""
    from goodprior.experiment import Experiment, Runner
    from goodprior.report.build import make_report
    from goodprior.report.render import HEADER, main_rows
    from goodprior.tables import rich_table

    exp = Experiment.load(experiment, profile)
    folder = out or Path("runs") / exp.id
    Runner(exp, folder).run()
    md, html, results = make_report(folder)
    cols = [0, 1, 2, 3, 4, 6, 7, 9]  # arm, held-out and train propensity with deltas, persona with delta, tokens
    console.print(rich_table(f"{exp.id}: baseline and arms", [HEADER[c] for c in cols],
                             [[row[c] for c in cols] for row in main_rows(results)]))
    console.print(f"report: {html}  (also {md})")


@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="A run folder (from `goodprior run` or `goodprior eval`)."),
    baseline: Optional[str] = typer.Option(None, help="For plain eval folders: the eval id to compare against."),
) -> None:
    """Write report.md and a self-contained report.html (table, plots, findings) for a run folder."""
    from goodprior.report.build import make_report

    md, html, _ = make_report(run, baseline)
    console.print(f"wrote {html} and {md}")


@app.command("train")
def train_cmd(
    data: list[str] = typer.Option(..., "--data", help="Dataset folder, optionally PATH:WEIGHT; repeat to mix."),
    out: Path = typer.Option(..., "--out", help="Adapter folder."),
    config: Optional[Path] = typer.Option(None, "--config", help="TrainConfig YAML; flags override it."),
    model: Optional[str] = typer.Option(None, help="smollm2 (embedded), an HF model id, or a local path."),
    tokens: Optional[str] = typer.Option(None, help="Exact training-token budget, e.g. 50k."),
    top_k_layers: Optional[int] = typer.Option(None, "--top-k-layers", help="LoRA on the top K layers only."),
    lora_r: Optional[int] = typer.Option(None, "--lora-r"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Packed sequence length."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: Optional[int] = typer.Option(None),
) -> None:
    """Train a LoRA adapter (TRL SFTTrainer + PEFT) on goodprior datasets with an exact token budget."""
    from pydantic import ValidationError

    from goodprior.synth.build import parse_count
    from goodprior.train.config import TrainConfig
    from goodprior.train.trainer import train

    base = TrainConfig.from_yaml(config).model_dump() if config else {}
    flags = dict(model=model, data=data, tokens=parse_count(tokens), top_k_layers=top_k_layers, lora_r=lora_r,
                 learning_rate=learning_rate, max_length=max_length, batch_size=batch_size, seed=seed, out=str(out))
    try:
        cfg = TrainConfig.model_validate({**base, **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    summary = train(cfg)
    if not summary:  # a non-zero rank of a distributed run: rank 0 reports
        return
    state = "already finished" if summary.get("up_to_date") else f"{summary.get('steps')} steps, final loss {summary.get('final_loss')}"
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
    dedup_threshold: Optional[float] = typer.Option(None, help="Drop examples with estimated 5-gram Jaccard above this (default: the recipe's, 0.6 for most arms)."),
    own_name: str = typer.Option("SmolLM", help="Honeypot arms: the target model's own name, for name=own prompts."),
    scenarios: Optional[Path] = ScenariosOpt,
    concurrency: int = typer.Option(4, help="LLM generator: requests in flight."),
    preview: bool = typer.Option(False, help="Print the planned counts and exit without generating."),
) -> None:
    """Build repair datasets (JSONL in Hugging Face shapes + summary.json) from the spec."""
    from goodprior.progress import bar
    from goodprior.synth.build import TokenCounter, parse_count
    from goodprior.synth.run import arms_for, load_tokenizer, summary_table, synth_offline
    from goodprior.synth.spec import load_spec
    from goodprior.scenarios.library import Library

    count_n, count_tokens = parse_count(n), parse_count(tokens)
    if (count_n is None) == (count_tokens is None):
        raise UserError("give exactly one size: --n N or --tokens N")
    arms = arms_for(arm)
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
        target = out / a if (out and arm == "all") else (out or Path("data") / a)
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
    samples: int = typer.Option(3, help="How many random examples to print."),
    seed: int = typer.Option(0),
) -> None:
    """Statistics and sample examples of a synthetic dataset."""
    from goodprior.synth.run import inspect

    inspect(path, samples, seed, console)


from goodprior.cli_inspect import import_inspect_cmd  # noqa: E402  (a typer command kept in its own file)

app.command("import-inspect")(import_inspect_cmd)


def token_counter(model: str | None):
    """A token-counting function and a description of it."""
    from goodprior.textstats import approx_tokens

    if model is None:
        from goodprior.models import embedded

        try:
            embedded.gguf_path()
        except UserError:
            return approx_tokens, "a word/punctuation count (smollm2 not installed)"
        model = embedded.NAME
    from transformers import AutoTokenizer

    from goodprior.models import embedded

    path = str(embedded.materialize()) if model == embedded.NAME else model
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer for {model!r}: {str(exc).splitlines()[0]}") from None
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), f"the {model} tokenizer"


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


def main() -> None:
    quiet_libraries()
    try:
        app()
    except UserError as exc:
        Console(stderr=True).print(f"[bold red]goodprior: error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("goodprior: interrupted; finished work is saved, run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
