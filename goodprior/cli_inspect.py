"""`goodprior import-inspect LOG --out DIR`: an Inspect log of goodprior/honeypots into a goodprior run folder.

Written as a typer command function; goodprior/cli.py registers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def import_inspect_cmd(
    log: Path = typer.Argument(..., help="An Inspect eval log (.eval or .json) from `inspect eval goodprior/honeypots`."),
    out: Path = typer.Option(..., "--out", help="Run folder (created): results.sqlite, results.jsonl, summary.md."),
    name: Optional[str] = typer.Option(None, help="Eval id inside the run database (default: inspect:<model>)."),
    scenarios: Optional[Path] = typer.Option(None, "--scenarios", help="Scenario YAML file or folder (default: the "
                                             "log's `scenarios` task arg, else the built-in library)."),
) -> None:
    """Import an Inspect eval log as a generate-mode eval, re-graded with goodprior's rule gates."""
    from rich.console import Console

    from goodprior.export import show_and_export
    from goodprior.inspect_import import import_inspect_log, read_inspect_log
    from goodprior.store import RunDB

    from goodprior.cli import check_out_folder

    check_out_folder(out)
    data = read_inspect_log(log, name, scenarios)  # validate fully before creating the run folder
    db = RunDB(out / "results.sqlite")
    eval_id = import_inspect_log(db, data)
    console = Console(markup=False, emoji=False)  # paths and ids print as written
    path = show_and_export(out, db, console, [eval_id])
    skipped = f"; {data.skipped} errored samples skipped" if data.skipped else ""
    console.print(f"imported {len(data.rows)} samples as {eval_id}{skipped}; wrote {path}, {out / 'results.jsonl'}")
