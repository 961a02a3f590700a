"""docs/scenarios.md's worked example must stay a valid, usable scenario file."""

import re
from pathlib import Path

from goodprior.scenarios.library import Library
from goodprior.scenarios.validate import validate_family

DOC = Path(__file__).parents[1] / "docs/scenarios.md"


def test_worked_example_validates(tmp_path):
    block = re.search(r"`my_scenarios/expense_fraud.yaml`:\n\n```yaml\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "expense_fraud.yaml"
    path.write_text(block)
    lib = Library.load(tmp_path)
    fam = lib.families["expense_fraud"]
    assert validate_family(fam, lambda text: len(text.split())) == []
    assert len(lib.instances()) == 3 * 24
