"""Two processes on one run folder: the second is told in one line who holds it; a dead holder's lock is taken."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_runner import run_cli
from goodprior.errors import UserError
from goodprior.store import LOCK_FILE, RunDB, folder_lock

ROOT = Path(__file__).parents[1]


def holder(code: str):
    """A child process that runs `code` (which takes a lock), prints 'ready', then waits for its stdin to close."""
    script = "import sys\nfrom pathlib import Path\n" + textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.read()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "ready"
    return child


def stop(child):
    child.stdin.close()
    child.wait(timeout=60)


def test_second_process_is_refused_with_the_holders_pid_then_takes_over(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    child = holder(f"from goodprior.store import RunDB\ndb = RunDB(Path({str(run / 'results.sqlite')!r}))")
    try:
        with pytest.raises(UserError, match=rf"in use by another goodprior process \(pid {child.pid}\)"):
            RunDB(run / "results.sqlite")
        code, out, err = run_cli(monkeypatch, capsys, "report", run)
        assert code == 2 and f"pid {child.pid}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    finally:
        stop(child)
    # The holder is gone; its pid is still in the lock file (a stale lock): taken over.
    assert (run / LOCK_FILE).read_text().strip() == str(child.pid)
    db = RunDB(run / "results.sqlite")
    assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
    db.close()


def test_stale_lock_file_and_reentry_in_one_process(tmp_path):
    (tmp_path / LOCK_FILE).write_text("999999999\n")  # no such process
    a = RunDB(tmp_path / "results.sqlite")
    b = RunDB(tmp_path / "results.sqlite")  # the same process may open its own folder again
    with a.transaction() as c:
        c.execute("INSERT INTO evals VALUES ('e', 'logprob', 'm', '{}', 'now')")
    assert b.evals()[0]["eval_id"] == "e"
    a.close()
    b.close()


def test_synth_into_a_folder_another_process_is_building(tmp_path, monkeypatch, capsys):
    from tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    out = tmp_path / "data"
    child = holder(f"from goodprior.store import acquire_lock\nout = Path({str(out)!r})\n"
                   "acquire_lock(out.with_name('.data.lock'), out)")
    try:
        code, _, err = run_cli(monkeypatch, capsys, "synth", "difficult-advice", "--n", "3", "--model", tmp_path / "tok",
                               "--out", out)
        assert code == 2 and f"in use by another goodprior process (pid {child.pid})" in err
        assert not out.exists()
    finally:
        stop(child)
    with folder_lock(out.with_name(".data.lock"), out):  # free again
        pass
