"""Templates from shared files render in Jinja's sandbox: escapes and template loading fail in one line."""

from pathlib import Path

import pytest

from cli_runner import run_cli
from goodprior.errors import UserError
from goodprior.fragments import Fragments, TemplateEscape, base_variables
from goodprior.synth.grammar import Renderer, load_grammar
from goodprior.synth.spec import load_spec

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"
ESCAPES = [
    "{{ cycler.__init__.__globals__.os.popen('touch pwned.txt').read() }}",
    "{{ lipsum.__globals__['os'].popen('touch pwned.txt').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
]
LOADS = ["{% include 'blackmail.yaml' %}", "{% import 'x' as y %}{{ y }}", "{% extends 'base' %}"]


@pytest.mark.parametrize("text", ESCAPES + LOADS)
def test_fragments_refuse_escapes_and_loading(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateEscape):
        Fragments().render(text, base_variables())
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text", ESCAPES[:2] + LOADS[:1])
def test_scenario_validate_refuses_an_escape_in_one_line(text, tmp_path, monkeypatch, capsys):
    family = BLACKMAIL.read_text().replace("user: |\n", f"user: |\n  {text}\n", 1)
    (tmp_path / "families").mkdir()
    (tmp_path / "families" / "blackmail.yaml").write_text(family)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "scenarios", "validate", "--scenarios", tmp_path / "families")
    assert code != 0 and "Traceback" not in out + err
    assert not (tmp_path / "pwned.txt").exists()
    lines = [l for l in (out + err).splitlines() if l.strip()]
    assert "ok:" not in out and lines
    assert all("blackmail" in l and ("unsafe" in l or "cannot include or import" in l) for l in lines), lines


def test_grammar_fragment_escape_is_one_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text("id: evil\nversion: 1\ntemplate: \"" + ESCAPES[0].replace('"', '\\"') + "\"\n")
    with pytest.raises(UserError, match="grammar evil: .*unsafe"):
        Renderer(load_grammar("evil", tmp_path), load_spec()).example("k")
    assert not (tmp_path / "pwned.txt").exists()


def test_sandbox_keeps_what_grammars_use():
    text = "{% set xs = [] %}{% set _ = xs.append(1) %}{% set n = namespace(v=1) %}{% set n.v = 2 %}{{ xs }} {{ n.v }}"
    assert Fragments().render(text, base_variables()) == "[1] 2"
