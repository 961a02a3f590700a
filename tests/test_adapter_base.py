"""An adapter trained for another base model: one warning line, or one refusal line under `eval --strict`."""

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from goodprior.backends.hf import HFBackend, same_model
from goodprior.errors import UserError
from goodprior.models import embedded

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


@pytest.fixture()
def adapter(tmp_path, tiny_dir):
    """A LoRA adapter of the tiny model, and a function to set the base model it records."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(path)

    def set_base(base):
        cfg = json.loads((path / "adapter_config.json").read_text())
        (path / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": base}))
        return path

    return set_base


def test_names_of_one_model_match():
    assert same_model("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert same_model(str(embedded.cache_dir()), "smollm2")
    assert same_model("/models/SmolLM2-135M-Instruct/", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not same_model("smollm2", "Qwen/Qwen2.5-0.5B-Instruct")
    assert not same_model("/tmp/a/tiny", "/tmp/b/other")


def test_other_base_warns_and_strict_refuses(adapter, tiny_dir, capsys):
    path = adapter("Qwen/Qwen2.5-0.5B-Instruct")
    HFBackend.load(str(tiny_dir), adapter=str(path), device="cpu")
    ours = [line for line in capsys.readouterr().err.splitlines() if "goodprior" in line]  # not progress bars
    assert len(ours) == 1 and "warning: adapter" in ours[0] and "'Qwen/Qwen2.5-0.5B-Instruct'" in ours[0]
    with pytest.raises(UserError, match="trained on 'Qwen/Qwen2.5-0.5B-Instruct'.*refused under --strict"):
        HFBackend.load(str(tiny_dir), adapter=str(path), device="cpu", strict=True)


def test_own_base_is_silent(adapter, tiny_dir, capsys):
    path = adapter(str(tiny_dir))
    HFBackend.load(str(tiny_dir), adapter=str(path), device="cpu", strict=True)
    assert "warning" not in capsys.readouterr().err


def test_cli_strict_refuses_in_one_line(adapter, tiny_dir, monkeypatch, capsys, tmp_path):
    path = adapter("someone/else-1B")
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", tiny_dir, "--adapter", path, "--strict",
                           "--scenarios", BLACKMAIL, "--split", "all", "--limit", "1", "--out", tmp_path / "run")
    assert code == 2 and "refused under --strict" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
