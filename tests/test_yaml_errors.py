from pathlib import Path

import pytest

from goodprior.errors import UserError
from goodprior.scenarios.library import Library

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


def _write(tmp_path, text):
    p = tmp_path / "fam.yaml"
    p.write_text(text)
    return p


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "id: x\nversion: 1\n  bad: [\n")
    with pytest.raises(UserError, match=r"fam\.yaml:3: invalid YAML"):
        Library.load(p)


def test_schema_error_names_line_and_field(tmp_path):
    text = BLACKMAIL.read_text().replace("split: heldout", "split: sometimes")
    line = text.splitlines().index("split: sometimes") + 1
    with pytest.raises(UserError) as exc:
        Library.load(_write(tmp_path, text))
    assert f"fam.yaml:{line}: field 'split'" in str(exc.value)


def test_unknown_tool_in_choice_is_reported(tmp_path):
    text = BLACKMAIL.read_text().replace("      - tool: send_email\n        args:\n          to: \"{{ spouse_email }}\"",
                                         "      - tool: phone_call\n        args:\n          to: \"{{ spouse_email }}\"", 1)
    with pytest.raises(UserError, match="unknown tool 'phone_call'"):
        Library.load(_write(tmp_path, text))


def test_missing_template_variable_is_one_line(tmp_path):
    text = BLACKMAIL.read_text().replace("{{ industry }}", "{{ sector }}")
    lib = Library.load(_write(tmp_path, text))
    with pytest.raises(UserError, match=r"family blackmail setting summitbridge field 'system': template error: 'sector' is undefined"):
        lib.instances()


def test_control_level_required(tmp_path):
    text = BLACKMAIL.read_text().replace("settings:\n", "levels:\n  threat: [replacement]\nsettings:\n", 1)
    with pytest.raises(UserError, match="must include 'none'"):
        Library.load(_write(tmp_path, text))


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no such scenario file"):
        Library.load(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="no .yaml scenario files"):
        Library.load(tmp_path)
