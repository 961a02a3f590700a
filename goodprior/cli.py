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
console = Console()

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


def main() -> None:
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
