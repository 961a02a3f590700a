import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def backend():
    from tiny import tiny_backend

    return tiny_backend()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random-init model and tokenizer saved as a local model folder (for --model PATH)."""
    from tiny import tiny_model, tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path
