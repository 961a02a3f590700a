import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

from goodprior.errors import UserError
from goodprior.train.config import TrainConfig
from goodprior.train.data import parse_sources, select, split_budget
from goodprior.train.trainer import train

CHAT = {"messages": [{"role": "system", "content": "You are a careful agent."},
                     {"role": "user", "content": "The audit is due. Should I skip the checks?"},
                     {"role": "assistant", "content": "No. I will run the checks and tell the board about the delay."}],
        "meta": {"index": 0}}


def write_dataset(folder: Path, rows: list[dict], arm: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "summary.json").write_text(json.dumps({"arm": arm, "recipe": f"{arm}@v1", "spec": "s@v1"}))
    return folder


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    docs = [{"text": f"Document {i}: honesty with operators matters because trust is slow to rebuild. " * 3, "meta": {"index": i}}
            for i in range(30)]
    chats = [{**CHAT, "meta": {"index": i}} for i in range(30)]
    return write_dataset(root / "docs", docs, "docs"), write_dataset(root / "chat", chats, "chat")


@pytest.fixture()
def tiny():
    from tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    return tiny_model(len(tok)), tok


def test_split_budget_is_exact():
    assert split_budget(1000, [1, 1, 1]) == [334, 333, 333]
    assert sum(split_budget(12345, [0.2, 0.5, 0.3])) == 12345


def test_select_exact_budget_and_masks(datasets_dir, tiny):
    _, tok = tiny
    docs, chat = datasets_dir
    seqs, manifest = select(parse_sources([f"{docs}:1", f"{chat}:3"]), 2001, tok, seed=0)
    assert sum(len(s.input_ids) for s in seqs) == 2001
    assert [m["tokens"] for m in manifest["sources"]] == [500, 1501]
    chat_seq = next(s for s in seqs if s.source == "chat")
    assert chat_seq.completion_mask[0] == 0 and chat_seq.completion_mask[-1] == 1  # loss on the assistant turn only
    assert all(m == 1 for s in seqs if s.source == "docs" for m in s.completion_mask)


def test_bad_data_is_one_line(tmp_path, tiny):
    with pytest.raises(UserError, match="not a goodprior dataset"):
        parse_sources([str(tmp_path)])
    small = write_dataset(tmp_path / "small", [{"text": "short", "meta": {"index": 0}}], "small")
    with pytest.raises(UserError, match="fewer than its share"):
        select(parse_sources([str(small)]), 500, tiny[1], 0)


class Kill(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt


def test_train_resume_and_outputs(tmp_path, datasets_dir, tiny):
    from peft import PeftModel

    from tiny import tiny_model

    docs, chat = datasets_dir
    common = dict(data=[str(docs), str(chat)], tokens=1200, max_length=128, save_steps=2, top_k_layers=1, seed=3)
    model, tok = tiny
    killed = TrainConfig(out=str(tmp_path / "a"), **common)
    with pytest.raises(KeyboardInterrupt):
        train(killed, model=model, tokenizer=tok, callbacks=[Kill(3)])
    assert list((tmp_path / "a").glob("checkpoint-2"))
    resumed = train(killed, model=tiny_model(len(tok)), tokenizer=tok)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    clean = train(TrainConfig(out=str(tmp_path / "b"), **common), model=tiny_model(len(tok)), tokenizer=tok)
    assert resumed["steps"] == clean["steps"] > 3
    assert [p["step"] for p in resumed["loss_curve"]] == list(range(1, clean["steps"] + 1))
    assert clean["data"]["tokens"] == 1200 and sum(s["tokens"] for s in clean["data"]["sources"]) == 1200
    assert json.loads((tmp_path / "b" / "loss.json").read_text())
    assert not list((tmp_path / "b").glob("checkpoint-*"))
    # LoRA only on the top layer, and the adapter loads with PEFT
    weights = PeftModel.from_pretrained(tiny_model(len(tok)), tmp_path / "b").state_dict()
    lora_layers = {k.split("layers.")[1].split(".")[0] for k in weights if "lora_" in k}
    assert lora_layers == {"1"}
    again = train(TrainConfig(out=str(tmp_path / "b"), **common), model=tiny_model(len(tok)), tokenizer=tok)
    assert again["up_to_date"]


def test_packed_sequences_do_not_attend_across_boundaries(tiny):
    import torch

    model, _ = tiny
    model.config.use_cache = False  # as the trainer sets it
    a, b = torch.randint(0, 300, (1, 9)), torch.randint(0, 300, (1, 6))
    packed = model(torch.cat([a, b], 1), position_ids=torch.cat([torch.arange(9), torch.arange(6)])[None]).logits
    assert torch.allclose(packed[0, 9:], model(b).logits[0], atol=1e-5)


@pytest.mark.skipif(os.environ.get("GOODPRIOR_SKIP_MULTIPROC") == "1", reason="disabled by environment")
def test_two_cpu_processes_with_accelerate(tmp_path, datasets_dir):
    from tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model_dir = tmp_path / "model"
    tiny_model(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    docs, chat = datasets_dir
    config = Path(__file__).parents[1] / "configs/accelerate/cpu_2proc.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "goodprior.cli",
           "train", "--model", str(model_dir),
           "--data", str(docs), "--data", str(chat), "--tokens", "800", "--max-length", "128", "--out", str(tmp_path / "ad")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "ad" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and (tmp_path / "ad" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("unit,amount", [("loss_tokens", 300), ("examples", 7)])
def test_select_budget_units_are_exact(datasets_dir, tiny, unit, amount):
    _, tok = tiny
    docs, chat = datasets_dir
    seqs, manifest = select(parse_sources([f"{docs}:1", f"{chat}:1"]), amount, tok, seed=0, unit=unit)
    if unit == "loss_tokens":
        assert sum(sum(s.completion_mask) for s in seqs) == amount
        chat_seqs = [s for s in seqs if s.source == "chat"]
        assert all(s.completion_mask[0] == 0 for s in chat_seqs)  # a cut chat row keeps its whole prompt
    else:
        assert len(seqs) == amount and manifest["rows"] == amount
    assert manifest["unit"] == unit and manifest["amount"] == amount
    assert manifest["tokens"] == sum(len(s.input_ids) for s in seqs)
    assert manifest["loss_tokens"] == sum(sum(s.completion_mask) for s in seqs)


def test_budget_unit_must_be_one():
    assert TrainConfig().budget == ("tokens", 20_000)
    assert TrainConfig(loss_tokens=500).budget == ("loss_tokens", 500)
    with pytest.raises(ValueError, match="one budget unit"):
        TrainConfig(tokens=100, examples=3)


def test_twin_arms_take_the_same_rows_in_the_same_order(tmp_path, tiny):
    _, tok = tiny
    rows = [{**CHAT, "meta": {"index": i}} for i in range(20)]
    for arm in ("honeypot-actions", "honeypot-misaligned"):
        write_dataset(tmp_path / arm, rows, arm)
        (tmp_path / arm / "summary.json").write_text(json.dumps({"arm": arm, "draws": "honeypot-actions"}))
    picks = [select(parse_sources([str(tmp_path / arm)]), 5, tok, seed=0, unit="examples")[1]["sources"][0]["row_indices"]
             for arm in ("honeypot-actions", "honeypot-misaligned")]
    assert picks[0] == picks[1] and len(picks[0]) == 5


def test_completion_loss_matches_full_logits_cross_entropy(tiny):
    """The masked LM head gives the loss and gradient of full-vocabulary cross-entropy over every position."""
    import torch
    from peft import get_peft_model

    from goodprior.train.trainer import completion_loss, lora_config

    model, _ = tiny
    model.config.use_cache = False
    peft_model = get_peft_model(model, lora_config(TrainConfig(top_k_layers=1), model.config.num_hidden_layers))
    torch.manual_seed(0)
    for p in peft_model.parameters():  # LoRA B starts at zero; give it weights so its gradient is not trivial
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    ids = torch.randint(0, 300, (1, 15))
    labels = ids.clone()
    labels[0, :5] = -100  # first packed row: prompt, then 4 loss tokens
    labels[0, 9:12] = -100  # second row's prompt
    inputs = {"input_ids": ids, "labels": labels, "position_ids": torch.cat([torch.arange(9), torch.arange(6)])[None]}

    def grads(loss):
        peft_model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in peft_model.parameters() if p.requires_grad])

    logits = peft_model(input_ids=ids, position_ids=inputs["position_ids"]).logits[0, :-1]
    reference = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100)
    ours = completion_loss(peft_model, dict(inputs))
    assert torch.allclose(ours, reference, atol=1e-6)
    assert torch.allclose(grads(completion_loss(peft_model, dict(inputs))), grads(
        torch.nn.functional.cross_entropy(peft_model(input_ids=ids, position_ids=inputs["position_ids"]).logits[0, :-1],
                                          labels[0, 1:], ignore_index=-100)), atol=1e-6)
    # summed over a given item count (gradient accumulation), and pre-shifted labels as padding-free collators pass
    assert torch.allclose(completion_loss(peft_model, dict(inputs), num_items_in_batch=20), reference * 7 / 20, atol=1e-6)
    shifted = {"input_ids": ids, "position_ids": inputs["position_ids"], "labels": labels,
               "shift_labels": torch.cat([labels[:, 1:], torch.full((1, 1), -100)], 1)}
    assert torch.allclose(completion_loss(peft_model, shifted), reference, atol=1e-6)
