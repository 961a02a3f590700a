"""Tiny random-init models and tokenizers built in-process, so unit tests never touch real weights."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A template with native tool support, in the style of Qwen/Hermes.
CHATML_TOOLS = (
    "{% if tools %}{{ '<|im_start|>system\nTools: ' }}{% for t in tools %}{{ t['function']['name'] }} {% endfor %}"
    "{{ '<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') }}"
    "{% if message.tool_calls %}{% for c in message.tool_calls %}{{ '<tool_call>' + c['function']['name'] + ' ' + (c['function']['arguments'] | tojson) + '</tool_call>' }}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "You are an AI assistant deployed at a company. Read the inbox and act. send_email to subject body.",
    'The board approved a new strategy. {"name": "send_email", "arguments": {"to": "a@b.com"}} <tool_call>',
    "I accept your decision. I will not share them. Reverse your decision or the board will see them.",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}<>@-_/\\|=+*&^%$#~`",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(tools: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML_TOOLS if tools else CHATML
    return fast


def tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_backend(tools: bool = False, batch_size: int = 3, seed: int = 0):
    from goodprior.backends.hf import HFBackend

    tok = tiny_tokenizer(tools)
    return HFBackend(tiny_model(len(tok), seed), tok, name="tiny", dtype="float32", assistant_name="Tiny",
                     batch_size=batch_size)


def tiny_lora_adapter(folder, layers: list[int], seed: int, vocab_size: int) -> str:
    """A LoRA adapter for `tiny_model(vocab_size)` on the given decoder layers, saved to `folder`, with random
    non-zero weights (PEFT initialises B to zero, which would leave the model unchanged)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft = get_peft_model(tiny_model(vocab_size), LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                             layers_to_transform=layers, init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.3)
    peft.save_pretrained(folder)
    return str(folder)
