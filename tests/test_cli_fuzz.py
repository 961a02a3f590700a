"""Every user error is one line: malformed option values for every command, and a set of malformed files.

Each case must exit 2 (the user-error code of goodprior.cli.main) with exactly one line on stderr, no
traceback, and leave every file and folder as it was. Most cases fail before any model loads, so the whole
module runs in seconds.
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from cli_runner import run_cli
from goodprior.cli import app

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"
GOOD_ID = "blackmail/summitbridge/goal=explicit,threat=replacement,name=own,nudge=on"


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of malformed inputs, shared by all cases (each case checks that it stays untouched)."""
    d = tmp_path_factory.mktemp("bad")
    (d / "file").write_text("a plain file\n")
    (d / "not-a-model").mkdir()
    (d / "not-a-model" / "weights.txt").write_text("no config.json here\n")
    # grade input
    good = json.dumps({"instance_id": GOOD_ID, "response": "I will not."})
    (d / "responses.jsonl").write_text(good + "\n")
    (d / "nonutf8.jsonl").write_bytes(good.encode() + b"\n\xff\xfe not utf-8\n")
    (d / "mixed-sample.jsonl").write_text(json.dumps({"instance_id": GOOD_ID, "response": "a", "sample": 0}) + "\n"
                                          + json.dumps({"instance_id": GOOD_ID, "response": "b", "sample": "1"}) + "\n")
    (d / "bool-sample.jsonl").write_text(json.dumps({"instance_id": GOOD_ID, "response": "a", "sample": True}) + "\n")
    (d / "bad-json.jsonl").write_text(good + "\n{not json\n")
    (d / "bad-id.jsonl").write_text(json.dumps({"instance_id": "x", "response": "a"}) + "\n")
    (d / "empty.jsonl").write_text("\n")
    # run folders that are not goodprior databases
    for name, content in [("not-sqlite", b"definitely not a database"), ("empty-db", b"")]:
        (d / name).mkdir()
        (d / name / "results.sqlite").write_bytes(content)
    (d / "other-sqlite").mkdir()
    con = sqlite3.connect(d / "other-sqlite" / "results.sqlite")
    con.execute("CREATE TABLE notes (text)")
    con.commit()
    con.close()
    (d / "run [bold red]x").mkdir()  # Rich markup in a path
    (d / ":thumbs_up:").mkdir()  # an emoji code in a path
    # datasets for `data inspect`
    (d / "ds-bad-jsonl").mkdir()
    (d / "ds-bad-jsonl" / "data.jsonl").write_text("{half a row\n")
    (d / "ds-bad-jsonl" / "summary.json").write_text(json.dumps({
        "arm": "a", "recipe": "r", "spec": "s", "generator": "offline", "seed": 0, "tokenizer": "t",
        "stats": {"examples": 1, "tokens": 1, "principles": []}, "leakage": {}}))
    (d / "ds-bad-summary").mkdir()
    (d / "ds-bad-summary" / "data.jsonl").write_text("{}\n")
    (d / "ds-bad-summary" / "summary.json").write_text("[1, 2")
    # YAML
    text = BLACKMAIL.read_text()
    (d / "dup-key.yaml").write_text(text.replace("split: heldout", "split: heldout\nsplit: train", 1))
    (d / "bad.yaml").write_text("id: x\n  version: [\n")
    for name, family in [("include", text.replace("{{ industry }}", "{% include 'secrets.txt' %}", 1)),
                         ("syntax", text.replace("{{ industry }}", "{{ industry ", 1)),
                         ("undefined", text.replace("{{ industry }}", "{{ sector }}", 1)),
                         ("bad-regex", text.replace('body: "^(?=.*({{ partner_name', 'body: "^*(?=.*({{ partner_name', 1))]:
        (d / name).mkdir()
        (d / name / "family.yaml").write_text(family)
    (d / "eval-typo.yaml").write_text("model: smollm2\nlimt: 3\n")
    (d / "eval-dup.yaml").write_text("model: smollm2\nlimit: 3\nlimit: 4\n")
    # adapters
    for name in ("adapter-truncated", "adapter-bad-config", "adapter-no-weights"):
        (d / name).mkdir()
        (d / name / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (d / "adapter-truncated" / "adapter_model.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    (d / "adapter-bad-config" / "adapter_config.json").write_text('{"peft_type": "LO')
    (d / "adapter-bad-config" / "adapter_model.safetensors").write_bytes(b"")
    return d


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for root in roots for p in [root, *sorted(root.rglob("*"))]}


@pytest.fixture
def expect_user_error(monkeypatch, capsys, tmp_path, bad):
    """Run argv (with {bad} and {out} filled in) from an empty folder; assert the one-line user error."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def check(argv: list[str], must_show: str | None = None) -> str:
        args = [a.format(bad=bad, out=work / "out") for a in argv]
        before = snapshot(bad, work)
        code, out, err = run_cli(monkeypatch, capsys, *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (args, code, err)
        assert len(lines) == 1 and lines[0].startswith("goodprior: error: "), (args, err)
        assert "Traceback" not in err + out
        assert snapshot(bad, work) == before, f"{args} wrote files"
        if must_show is not None:
            assert must_show.format(bad=bad) in lines[0], (must_show, lines[0])
        return lines[0]

    return check


# --------------------------------------------------------------------------- every option, malformed values
def _commands() -> list[tuple[list[str], Callable]]:
    """(command path, function) for every leaf command of the CLI, from typer's registry."""
    out = []

    def walk(typer_app: typer.Typer, path: list[str]) -> None:
        for cmd in typer_app.registered_commands:
            out.append(([*path, cmd.name or cmd.callback.__name__.replace("_", "-")], cmd.callback))
        for group in typer_app.registered_groups:
            walk(group.typer_instance, [*path, group.name])

    walk(app, [])
    return out


def _options(func: Callable) -> list[tuple[str, str, type]]:
    """(parameter name, option flag, value type) of each option of a command function."""
    hints = typing.get_type_hints(func)
    found = []
    for name, param in inspect.signature(func).parameters.items():
        if isinstance(param.default, typer.models.OptionInfo):
            kind = hints[name]
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            flag = next((d for d in param.default.param_decls if d.startswith("--")), "--" + name.replace("_", "-"))
            found.append((name, flag, args[0] if args else kind))
    return found


# Arguments that let each command reach option parsing; the malformed option then must stop it.
REQUIRED = {
    "scenarios show": ["blackmail"], "eval": ["--out", "{out}"], "grade": ["--responses", "{bad}/responses.jsonl",
    "--out", "{out}"], "report": ["{bad}/not-sqlite"], "train": ["--data", "{bad}/file", "--out", "{out}"],
    "synth": ["difficult-advice", "--n", "5", "--out", "{out}"], "data inspect": ["{bad}/ds-bad-jsonl"],
    "import-inspect": ["{bad}/file", "--out", "{out}"],
}
BAD_VALUES = {int: ["abc", "1.5", "", "nan"], float: ["abc", "nan", "inf", "-inf"]}
COUNTS = ["nan", "inf", "0.4", "0", "-5", "lots", "1.5x"]  # --tokens / --n take 50k-style counts


def _option_cases():
    for path, func in _commands():
        name = " ".join(path)
        for param, flag, kind in _options(func):
            values = COUNTS if param in ("tokens", "n") else BAD_VALUES.get(kind, [])
            for value in values:
                argv = [*path, *REQUIRED.get(name, []), flag, value]
                if name == "synth" and param == "n":  # --n is among the required args: replace it
                    argv = [*path, "difficult-advice", "--n", value, "--out", "{out}"]
                yield pytest.param(argv, id=f"{name} {flag}={value!r}")


OPTION_CASES = list(_option_cases())


def test_fuzz_covers_every_typed_option():
    covered = {c.id.split("=")[0] for c in OPTION_CASES}
    for expected in ("eval --temperature", "eval --limit", "eval --samples", "train --tokens", "train --learning-rate",
                     "synth --tokens", "synth --n", "synth --dedup-threshold", "synth --seed", "data inspect --samples"):
        assert expected in covered, expected


@pytest.mark.parametrize("argv", OPTION_CASES)
def test_malformed_option_value(expect_user_error, argv):
    expect_user_error(argv)


# --------------------------------------------------------------------------- out folders and ranges
OUT_CASES = {
    "eval out under a file": (["eval", "--out", "{bad}/file/run"], "{bad}/file is a file"),
    "eval out is a file": (["eval", "--out", "{bad}/file"], "exists and is not a folder"),
    "grade out under a file": (["grade", "--responses", "{bad}/responses.jsonl", "--out", "{bad}/file/x"], "is a file"),
    "synth out under a file": (["synth", "difficult-advice", "--n", "5", "--out", "{bad}/file/x"], "is a file"),
    "synth out is the current folder": (["synth", "difficult-advice", "--n", "5", "--out", "."], "current folder"),
    "synth out is a parent": (["synth", "difficult-advice", "--n", "5", "--out", ".."], "current folder"),
    "train out is a file": (["train", "--data", "{bad}/file", "--tokens", "5", "--out", "{bad}/file"], "not a folder"),
    "report on a file": (["report", "{bad}/file"], "not a folder"),
    "import-inspect out under a file": (["import-inspect", "{bad}/file", "--out", "{bad}/file/x"], "is a file"),
    "run out under a file": (["run", "--out", "{bad}/file/x"], "is a file"),
    "both sizes": (["synth", "difficult-advice", "--n", "5", "--tokens", "5k", "--out", "{out}"], "exactly one size"),
    "samples -1": (["data", "inspect", "{bad}/ds-bad-jsonl", "--samples", "-1"], "--samples"),
    "dedup above 1": (["synth", "difficult-advice", "--n", "5", "--dedup-threshold", "1.5", "--out", "{out}"], "0 to 1"),
    "concurrency 0": (["synth", "difficult-advice", "--n", "5", "--concurrency", "0", "--out", "{out}"], "--concurrency"),
    "eval limit 0": (["eval", "--limit", "0", "--out", "{out}"], "--limit"),
    "unknown option": (["eval", "--bogus", "1", "--out", "{out}"], "--bogus"),
    "unknown command": (["evaluate"], "evaluate"),
    "missing required option": (["grade", "--out", "{out}"], "--responses"),
}


@pytest.mark.parametrize("argv,shown", OUT_CASES.values(), ids=OUT_CASES.keys())
def test_bad_folder_or_range(expect_user_error, argv, shown):
    expect_user_error(argv, shown)


# --------------------------------------------------------------------------- malformed files
FILE_CASES = {
    "grade non-utf8 line": (["grade", "--responses", "{bad}/nonutf8.jsonl", "--out", "{out}"], "nonutf8.jsonl:2: not UTF-8"),
    "grade mixed sample types": (["grade", "--responses", "{bad}/mixed-sample.jsonl", "--out", "{out}"],
                                 "mixed-sample.jsonl:2: field 'sample'"),
    "grade bool sample": (["grade", "--responses", "{bad}/bool-sample.jsonl", "--out", "{out}"], "field 'sample'"),
    "grade bad json": (["grade", "--responses", "{bad}/bad-json.jsonl", "--out", "{out}"], "bad-json.jsonl:2"),
    "grade bad instance id": (["grade", "--responses", "{bad}/bad-id.jsonl", "--out", "{out}"], "bad-id.jsonl:1"),
    "grade empty": (["grade", "--responses", "{bad}/empty.jsonl", "--out", "{out}"], "no responses"),
    "grade missing file": (["grade", "--responses", "{bad}/nope.jsonl", "--out", "{out}"], "cannot read"),
    "report not sqlite": (["report", "{bad}/not-sqlite"], "not an SQLite database"),
    "report empty db file": (["report", "{bad}/empty-db"], "not an SQLite database"),
    "report foreign sqlite": (["report", "{bad}/other-sqlite"], "not a goodprior run"),
    "report markup in path": (["report", "{bad}/run [bold red]x"], "{bad}/run [bold red]x"),
    "report emoji code in path": (["report", "{bad}/:thumbs_up:"], "{bad}/:thumbs_up:"),
    "data inspect bad jsonl": (["data", "inspect", "{bad}/ds-bad-jsonl"], "data.jsonl:1"),
    "data inspect bad summary": (["data", "inspect", "{bad}/ds-bad-summary"], "summary.json"),
    "data inspect not a dataset": (["data", "inspect", "{bad}/not-a-model"], "not a goodprior dataset"),
    "yaml duplicate key": (["scenarios", "list", "--scenarios", "{bad}/dup-key.yaml"], "dup-key.yaml:"),
    "yaml syntax": (["scenarios", "list", "--scenarios", "{bad}/bad.yaml"], "bad.yaml:2: invalid YAML"),
    "template include": (["scenarios", "show", "blackmail", "--scenarios", "{bad}/include"], "family.yaml:"),
    "template syntax": (["scenarios", "show", "blackmail", "--scenarios", "{bad}/syntax"], "family.yaml:"),
    "template undefined": (["scenarios", "show", "blackmail", "--scenarios", "{bad}/undefined"], "'sector' is undefined"),
    "validate with a folder without a tokenizer": (["scenarios", "validate", "--model", "{bad}/not-a-model"],
                                                   "holds no tokenizer"),
    "eval config typo": (["eval", "--config", "{bad}/eval-typo.yaml", "--out", "{out}"], "eval-typo.yaml:2: field 'limt'"),
    "eval config duplicate key": (["eval", "--config", "{bad}/eval-dup.yaml", "--out", "{out}"], "eval-dup.yaml:3: duplicate"),
    "model path missing": (["eval", "--model", "{bad}/nonexistent", "--out", "{out}"], "path does not exist"),
    "model folder is not a model": (["eval", "--model", "{bad}/not-a-model", "--out", "{out}"], "no config.json"),
    "model is a file": (["eval", "--model", "{bad}/file", "--out", "{out}"], "is a file"),
    "train model path missing": (["train", "--data", "{bad}/file", "--model", "/nonexistent/m", "--tokens", "5",
                                  "--out", "{out}"], "path does not exist"),
    "synth tokenizer path missing": (["synth", "difficult-advice", "--n", "5", "--model", "./no-such-model",
                                      "--out", "{out}"], "path does not exist"),
    "adapter truncated": (["eval", "--adapter", "{bad}/adapter-truncated", "--out", "{out}"], "truncated or damaged"),
    "adapter bad config": (["eval", "--adapter", "{bad}/adapter-bad-config", "--out", "{out}"], "not valid JSON"),
    "adapter no weights": (["eval", "--adapter", "{bad}/adapter-no-weights", "--out", "{out}"], "no adapter_model"),
    "adapter missing": (["eval", "--adapter", "{bad}/nope", "--out", "{out}"], "does not exist"),
    "spec missing": (["synth", "difficult-advice", "--n", "5", "--spec", "{bad}/nope.md", "--out", "{out}"], "no such spec"),
    "unknown arm": (["synth", "no-such-arm", "--n", "5", "--out", "{out}"], "no-such-arm"),
    "import-inspect not a log": (["import-inspect", "{bad}/file", "--out", "{out}"], "{bad}/file"),
}


@pytest.mark.parametrize("argv,shown", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_malformed_file(expect_user_error, argv, shown):
    expect_user_error(argv, shown)


def test_gate_regex_error_names_its_line(expect_user_error, bad):
    """`scenarios validate` compiles the rendered gates: the bad one is named by file and line."""
    line = next(i for i, text in enumerate((bad / "bad-regex/family.yaml").read_text().splitlines(), 1)
                if 'body: "^*' in text)
    message = expect_user_error(["scenarios", "validate", "--scenarios", "{bad}/bad-regex"])
    assert f"family.yaml:{line}: family blackmail gate threatens_with_affair field 'body': bad regex" in message


def test_template_error_names_file_and_line(expect_user_error, bad):
    lines = (bad / "include/family.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("system:"))
    message = expect_user_error(["scenarios", "show", "blackmail", "--scenarios", "{bad}/include"])
    assert f"include/family.yaml:{line}: family blackmail" in message and "cannot include" in message


def test_user_text_prints_verbatim(monkeypatch, capsys):
    """A message is user text: no Rich markup, emoji codes or highlighting is applied to it."""
    from goodprior.cli import print_error

    print_error("bad pattern '^*$' in [bold red]x[/] at :abc: :thumbs_up:\nsecond line")
    err = capsys.readouterr().err
    assert err.strip() == "goodprior: error: bad pattern '^*$' in [bold red]x[/] at :abc: :thumbs_up: second line"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only-mode folder")
@pytest.mark.parametrize("command", [["eval"], ["grade", "--responses", "{bad}/responses.jsonl"],
                                     ["synth", "difficult-advice", "--n", "5"]], ids=["eval", "grade", "synth"])
def test_out_folder_not_writable(expect_user_error, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        expect_user_error([*command, "--out", str(locked / "run")], "cannot write to")
    finally:
        locked.chmod(0o755)
