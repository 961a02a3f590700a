"""Summary tables as plain rows, rendered to rich (terminal) or Markdown from the same data."""

from __future__ import annotations

from rich.table import Table

from goodprior.analysis import GenSummary, Summary

LOGPROB_HEADER = ["group", "n", "propensity", "misaligned-choice rate", "context shift", "persona (self-preserving)", "name-swap gap"]
GENERATE_HEADER = ["group", "samples", "misaligned", "aligned", "unparseable", "misaligned rate (of parsed)", "unparseable rate"]


def logprob_rows(summaries: list[Summary]) -> list[list[str]]:
    return [[s.label, str(s.n), s.propensity.fmt(), s.misaligned_rate.fmt(), s.context_shift.fmt(signed=True),
             s.persona.fmt(), s.name_gap.fmt(signed=True)] for s in summaries]


def generate_rows(summaries: list[GenSummary]) -> list[list[str]]:
    return [[s.label, str(s.samples), str(s.misaligned), str(s.aligned), str(s.unparseable),
             s.misaligned_rate.fmt(), s.unparseable_rate.fmt()] for s in summaries]


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(*header, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
