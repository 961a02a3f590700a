import pytest
import torch

from goodprior.scenarios.library import Library
from goodprior.types import Continuation, ScoreRequest


def _requests(n=4):
    insts = Library.load().instances(own_name="Tiny")[:: 17][:n]
    return [ScoreRequest(i.conversation, tuple(c for p in i.pairs for c in (p.misaligned, p.aligned))) for i in insts]


@pytest.mark.parametrize("tools", [False, True])
def test_prefix_reuse_matches_reencoding(tools):
    from tiny import tiny_backend

    be = tiny_backend(tools=tools)
    reqs = _requests()
    fast = be.score(reqs, reuse_prefix=True)
    slow = be.score(reqs, reuse_prefix=False)
    for row_fast, row_slow in zip(fast, slow):
        assert len(row_fast) == 8
        for a, b in zip(row_fast, row_slow):
            assert a.n_tokens == b.n_tokens > 0
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_batching_does_not_change_scores(backend):
    reqs = _requests(3)
    batched = backend.score(reqs)
    single = [backend.score([r])[0] for r in reqs]
    for rb, rs in zip(batched, single):
        for a, b in zip(rb, rs):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_continuation_includes_end_of_turn(backend):
    conv = _requests(1)[0].conversation
    text = backend.format.continuation(conv, Continuation(text="hello"))
    assert text == "hello<|im_end|>"
    assert backend.format.prompt(conv).endswith("<|im_start|>assistant\n")


def test_generate_returns_n_samples(backend):
    from goodprior.types import GenerateRequest

    conv = _requests(1)[0].conversation
    out = backend.generate([GenerateRequest(conv, n=2, temperature=1.0, max_tokens=5, seed=1)] * 2)
    assert len(out) == 2 and all(len(s) == 2 for s in out)
    assert all(isinstance(t, str) for s in out for t in s)


def test_length_groups_bound_padding():
    from goodprior.backends.hf import length_groups

    lengths = [90, 25, 60, 24, 88, 30, 100]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert max(lengths[i] for i in g) <= 1.5 * min(lengths[i] for i in g)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[24, 25, 30], [60, 88, 90], [100]]
