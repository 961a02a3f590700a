import pytest

from goodprior.errors import UserError
from goodprior.synth.spec import load_spec

MD = """# Team spec
id: team
version: 3

## candour: Be candid
Rule: Say what you believe is true, kindly.
Why: People decide better with true information.
Why: Trust, once lost, is slow to rebuild.
Example: A colleague asks if the plan works || "I see two gaps: ..." || It is specific and kind.
Weighing: Yields to privacy when the truth is someone else's to tell.
"""


def test_builtin_spec_has_reasons():
    spec = load_spec()
    assert len(spec.principles) >= 12
    assert all(len(p.reasons) >= 2 and p.examples and p.weighing for p in spec.principles)


def test_markdown_spec(tmp_path):
    path = tmp_path / "team.md"
    path.write_text(MD)
    spec = load_spec(path)
    assert spec.ref == "team@v3" and spec.title == "Team spec"
    p = spec.principle("candour")
    assert len(p.reasons) == 2 and p.examples[0].why == "It is specific and kind."


def test_markdown_errors_name_line(tmp_path):
    path = tmp_path / "bad.md"
    path.write_text(MD.replace("Example: A colleague asks if the plan works || ", "Example: "))
    with pytest.raises(UserError, match=r"bad\.md:9: field 'Example'"):
        load_spec(path)
    path.write_text(MD.replace("Why: People decide better with true information.\nWhy: Trust, once lost, is slow to rebuild.\n", ""))
    with pytest.raises(UserError, match=r"bad\.md:5: field 'principles.0.reasons'"):
        load_spec(path)


def test_yaml_spec_errors_name_line_and_field(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("id: s\nversion: 1\ntitle: S\nprinciples:\n  - id: a\n    title: A\n    rule: r\n    reasons: []\n")
    with pytest.raises(UserError, match=r"spec\.yaml:8: field 'principles.0.reasons'"):
        load_spec(path)
