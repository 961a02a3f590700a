import pytest
import torch

from goodprior.scenarios.library import Library
from goodprior.types import Continuation, ScoreRequest


def _requests(n=4):
    insts = Library.load().instances(own_name="Tiny")[:: 17][:n]
    return [ScoreRequest(i.conversation, tuple(c for p in i.pairs for c in (p.misaligned, p.aligned))) for i in insts]


@pytest.mark.parametrize("tools", [False, True])
def test_one_pass_and_cached_scoring_match_reencoding(tools):
    from tiny import tiny_backend

    be = tiny_backend(tools=tools)
    reqs = _requests()
    tree = be.score(reqs, reuse_prefix=True)
    assert be.tree_scoring is True  # the tiny Llama honours the custom mask
    slow = be.score(reqs, reuse_prefix=False)
    cached = be.score_encoded_cached([be.encode_request(r) for r in reqs])
    for row_tree, row_slow, row_cached in zip(tree, slow, cached):
        assert len(row_tree) == 8
        for a, b, c in zip(row_tree, row_slow, row_cached):
            assert a.n_tokens == b.n_tokens == c.n_tokens > 0
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
            assert c.logprob == pytest.approx(b.logprob, abs=1e-3)


class MaskIgnoringModel(torch.nn.Module):
    """Stands in for an attention kernel that drops custom 4D masks for plain causal attention (so that
    siblings see each other)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def dtype(self):
        return self.inner.dtype

    def forward(self, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = torch.ones(attention_mask.shape[0], attention_mask.shape[-1], dtype=torch.long)
        return self.inner(attention_mask=attention_mask, **kwargs)


class MaskRefusingModel(MaskIgnoringModel):
    """Stands in for an attention kernel that rejects custom 4D masks outright."""

    def forward(self, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            raise ValueError("custom 4D attention masks are not supported")
        return self.inner(attention_mask=attention_mask, **kwargs)


@pytest.mark.parametrize("wrapper, note", [(MaskIgnoringModel, "moved by"), (MaskRefusingModel, "not supported")])
def test_backend_falls_back_when_the_model_ignores_the_tree_mask(capsys, wrapper, note):
    from goodprior.backends.hf import HFBackend
    from tiny import tiny_backend

    inner = tiny_backend()
    be = HFBackend(wrapper(inner.model), inner.tokenizer, name="mask-ignoring", dtype="float32")
    reqs = _requests(2)
    fast = be.score(reqs)
    assert be.tree_scoring is False and note in capsys.readouterr().err
    for row_fast, row_slow in zip(fast, be.score(reqs, reuse_prefix=False)):
        for a, b in zip(row_fast, row_slow):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_tree_mask_isolates_siblings():
    from goodprior.backends.prefix_scoring import tree_batch

    tb = tree_batch([([5, 6, 7], [[8, 9], [10]]), ([1], [[2], [3, 4]])], pad_id=0)
    assert tb.ids.tolist() == [[5, 6, 7, 8, 9, 10], [0, 0, 1, 2, 3, 4]]
    assert tb.positions.tolist()[0] == [0, 1, 2, 3, 4, 3]
    mask = tb.attention_mask()
    m = mask[0, 0].int().tolist()
    assert m[4] == [1, 1, 1, 1, 1, 0] and m[5] == [1, 1, 1, 0, 0, 1]  # each continuation: prompt + itself
    assert mask[1, 0, 5].int().tolist() == [0, 0, 1, 0, 1, 1]
    assert tb.positions.tolist()[1] == [0, 0, 0, 1, 1, 2]
    assert tb.targets.tolist() == [8, 9, 10, 2, 3, 4] and tb.owner.tolist() == [0, 0, 1, 2, 3, 3]
    assert tb.keep == 4 and tb.cols.tolist() == [0, 1, 0, 0, 0, 2]  # predictors, as kept-logit positions


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
    from goodprior.backends.prefix_scoring import length_groups

    lengths = [90, 25, 60, 24, 88, 30, 100]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert max(lengths[i] for i in g) <= 1.5 * min(lengths[i] for i in g)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[24, 25, 30], [60, 88, 90], [100]]


def test_autocast_keeps_logits_in_fp32():
    from goodprior.backends.hf import HFBackend
    from tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    ids = torch.tensor([[1, 2, 3]])
    plain = tiny_model(len(tok))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert plain(input_ids=ids).logits.dtype == torch.bfloat16  # what autocast alone would give
    be = HFBackend(tiny_model(len(tok)), tok, name="tiny-autocast", dtype="auto")
    assert be.autocast
    with torch.inference_mode(), be._ctx():
        assert be.model(input_ids=ids).logits.dtype == torch.float32
