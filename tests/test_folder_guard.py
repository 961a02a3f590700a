"""`synth --out DIR` replaces only a folder goodprior wrote; anything else is refused in one line, untouched."""

import json

import pytest

from cli_runner import run_cli
from tiny import tiny_tokenizer


@pytest.fixture()
def tok(tmp_path):
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def synth(monkeypatch, capsys, tok, out, n="3"):
    return run_cli(monkeypatch, capsys, "synth", "difficult-advice", "--n", n, "--model", tok, "--out", out)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("files", [{"thesis.tex": "my work"}, {"summary.json": '{"mine": 1}', "a/b.txt": "x"},
                                   {"summary.json": "not json"}])
def test_a_users_folder_is_refused_and_left_alone(monkeypatch, capsys, tmp_path, tok, files):
    out = tmp_path / "precious"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = snapshot(out)
    code, stdout, err = synth(monkeypatch, capsys, tok, out)
    assert code == 2 and "refusing to replace it" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "tok"]  # no temp folder left beside it


def test_own_folder_is_replaced_and_extra_files_protect_it(monkeypatch, capsys, tmp_path, tok):
    out = tmp_path / "data"
    out.mkdir()  # an empty folder is fine
    assert synth(monkeypatch, capsys, tok, out)[0] == 0
    assert synth(monkeypatch, capsys, tok, out, n="4")[0] == 0  # goodprior's own dataset: replaced
    assert json.loads((out / "summary.json").read_text())["stats"]["examples"] == 4
    (out / "notes.md").write_text("my notes")
    code, _, err = synth(monkeypatch, capsys, tok, out, n="5")
    assert code == 2 and "notes.md" in err
    assert (out / "notes.md").read_text() == "my notes"
    assert json.loads((out / "summary.json").read_text())["stats"]["examples"] == 4


def test_a_file_is_not_replaced(monkeypatch, capsys, tmp_path, tok):
    out = tmp_path / "file.txt"
    out.write_text("keep")
    code, _, err = synth(monkeypatch, capsys, tok, out)
    assert code == 2 and "not a folder" in err and out.read_text() == "keep"
