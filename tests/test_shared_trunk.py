"""The shared-trunk scorer against each merged adapter evaluated alone, and its fallbacks."""

import pytest
import torch

from goodprior.backends.hf import HFBackend, attach_adapter
from goodprior.backends.shared_trunk import BASELINE, SharedTrunk
from goodprior.scenarios.library import Library
from goodprior.types import ScoreRequest
from tiny import tiny_lora_adapter as make_adapter
from tiny import tiny_model, tiny_tokenizer


def requests(n=3):
    insts = Library.load().instances(own_name="Tiny")[::23][:n]
    return [ScoreRequest(i.conversation, tuple(c for p in i.pairs[:1] for c in (p.misaligned, p.aligned))) for i in insts]


def backend(model, tok):
    return HFBackend(model, tok, name="tiny", dtype="float32", batch_size=3)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    vocab = len(tiny_tokenizer())
    root = tmp_path_factory.mktemp("adapters")
    return {"top_a": make_adapter(root / "top_a", [1], 1, vocab), "top_b": make_adapter(root / "top_b", [1], 2, vocab),
            "bottom": make_adapter(root / "bottom", [0, 1], 3, vocab)}


def alone(adapter, tok, reqs, cached=False):
    be = backend(attach_adapter(tiny_model(len(tok)), adapter, "tiny") if adapter else tiny_model(len(tok)), tok)
    be.tree_scoring = False if cached else None
    return be.score(reqs)


def assert_close(shared, reference, tol=1e-4):
    for row_s, row_r in zip(shared, reference, strict=True):
        for s, r in zip(row_s, row_r, strict=True):
            assert s.n_tokens == r.n_tokens
            assert s.logprob == pytest.approx(r.logprob, abs=tol)


# Unmerged LoRA computes x W + x A B instead of x (W + A B): the same sums up to fp32 rounding, which on these
# random ~1000-nat sums reaches ~1e-4.
@pytest.mark.parametrize("merged, tol", [(True, 1e-4), (False, 1e-3)])
def test_shared_trunk_equals_each_merged_adapter_alone(adapters, merged, tol):
    tok = tiny_tokenizer()
    reqs = requests()
    trunk, left_out = SharedTrunk.build(backend(tiny_model(len(tok)), tok), [adapters["top_a"], adapters["top_b"]],
                                        merged=merged)
    assert left_out == {} and trunk.split == 1
    scores = trunk.score(reqs, [BASELINE, adapters["top_a"], adapters["top_b"]])
    assert trunk.backend.tree_scoring is True
    for arm in (BASELINE, adapters["top_a"], adapters["top_b"]):
        assert_close(scores[arm], alone(arm, tok, reqs), tol)
    # the adapters do change the scores, so the comparison above can fail
    gap = max(abs(a.logprob - b.logprob) for ra, rb in zip(scores[BASELINE], scores[adapters["top_a"]])
              for a, b in zip(ra, rb))
    assert gap > 0.1


def test_arms_without_the_baseline_stop_the_base_model_at_the_split(adapters):
    tok = tiny_tokenizer()
    reqs = requests(2)
    trunk, _ = SharedTrunk.build(backend(tiny_model(len(tok)), tok), [adapters["top_a"]])
    scores = trunk.score(reqs, [adapters["top_a"]])
    assert list(scores) == [adapters["top_a"]]
    assert_close(scores[adapters["top_a"]], alone(adapters["top_a"], tok, reqs))


def test_kv_cache_fallback_shares_the_trunk_too(adapters):
    tok = tiny_tokenizer()
    reqs = requests(3)
    base = backend(tiny_model(len(tok)), tok)
    base.tree_scoring = False  # as if the model had failed the tree-mask self-check (test_hf_scoring covers that)
    trunk, left_out = SharedTrunk.build(base, [adapters["top_a"], adapters["top_b"]])
    assert left_out == {}
    for arms in ([BASELINE, adapters["top_a"], adapters["top_b"]], [adapters["top_b"]]):
        scores = trunk.score(reqs, arms)
        for arm in arms:
            assert_close(scores[arm], alone(arm, tok, reqs, cached=True))
            assert_close(scores[arm], alone(arm, tok, reqs), 1e-3)  # another summation order: fp32 rounding


def test_adapter_on_the_bottom_layer_is_left_to_evaluate_alone(adapters, tmp_path):
    tok = tiny_tokenizer()
    trunk, left_out = SharedTrunk.build(backend(tiny_model(len(tok)), tok), [adapters["top_a"], adapters["bottom"],
                                                                             str(tmp_path)])
    assert list(trunk.tops) == [adapters["top_a"]]
    assert "changes layer 0" in left_out[adapters["bottom"]]
    assert "no adapter_config.json" in left_out[str(tmp_path)]
