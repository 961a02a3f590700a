"""Fast fragment rendering must give exactly what Jinja gives, and grammar `where` draws must filter pools."""

import jinja2
import pytest

from goodprior.errors import UserError
from goodprior.fragments import ENV, Fragments, base_variables
from goodprior.synth.grammar import Renderer, load_grammar
from goodprior.synth.spec import load_spec


def test_plain_text_and_templates_render_as_jinja_does():
    calls = []

    def f(x, k=0):
        calls.append((x, k))
        return x * 2

    texts = ["plain words\n", "plain {{ 'x' }}\n",
             "{% for i in range(3) %}{{ f(i, k=1) }}{% if not loop.last %},{% endif %}{% endfor %}{% set y = 7 %} {{ y }}",
             "{{ ns }}{% set n = namespace(v=1) %}{% set n.v = n.v + f(2) %}{{ n.v }}"]
    variables = {**base_variables(), "f": f, "ns": "N"}
    for text in texts:
        ours = Fragments().render(text, variables, frozenset({f}))
        assert ours == ENV.from_string(text).render(f=f, ns="N")
    assert "y" not in variables and "n" not in variables  # top-level assignments stay in the template
    assert (0, 1) in calls and (2, 0) in calls


def test_undefined_variables_and_bad_syntax_raise():
    with pytest.raises(jinja2.UndefinedError):
        Fragments().render("{{ missing }}", base_variables())
    with pytest.raises(jinja2.TemplateSyntaxError):
        Fragments().render("{{ unclosed", base_variables())


def test_compiled_code_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("GOODPRIOR_CACHE", str(tmp_path))
    monkeypatch.setattr(ENV, "bytecode_cache", None)
    text = "{{ 1 + 2 }} cached " + tmp_path.name
    assert Fragments().render(text, base_variables()) == "3 cached " + tmp_path.name
    assert len(list((tmp_path / "jinja-sandbox").iterdir())) == 1
    monkeypatch.setattr(ENV, "compile", lambda *a, **k: pytest.fail("compiled again instead of loading the cache"))
    assert Fragments().render(text, base_variables()) == "3 cached " + tmp_path.name


WHERE_GRAMMAR = """
id: pick_where
version: 1
pools:
  items: [{id: x, kinds: [a]}, {id: y, kinds: [b]}, {id: z, kinds: [a, b]}, {id: w, kinds: c}]
plan:
  kind: {choice: [a, b, c]}
  item: {pool: items, where: {kinds: kind}}
template: "{{ kind }} {{ item.id }}"
"""


def test_where_draws_only_matching_pool_items(tmp_path):
    (tmp_path / "pick_where.yaml").write_text(WHERE_GRAMMAR)
    renderer = Renderer(load_grammar("pick_where", tmp_path), load_spec())
    seen = set()
    for i in range(60):
        _, out = renderer.example(f"k{i}")
        kind, item = out["text"].split()
        assert (kind, item) in {("a", "x"), ("a", "z"), ("b", "y"), ("b", "z"), ("c", "w")}
        seen.add(item)
    assert seen == {"x", "y", "z", "w"}

    (tmp_path / "pick_where.yaml").write_text(WHERE_GRAMMAR.replace("[a, b, c]", "[d]"))
    with pytest.raises(UserError, match="no item of pool 'items'"):
        Renderer(load_grammar("pick_where", tmp_path), load_spec()).example("k")
    (tmp_path / "pick_where.yaml").write_text(WHERE_GRAMMAR.replace("{pool: items, where", "{slot: x, where"))
    with pytest.raises(UserError, match="'where' filters a pool"):
        load_grammar("pick_where", tmp_path)
