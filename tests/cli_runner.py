"""Call the goodprior CLI in-process, as a user would from the shell, and capture what it prints."""

import sys

from goodprior.cli import main


def run_cli(monkeypatch, capsys, *args):
    """(exit code, stdout, stderr) of `goodprior ARGS...`."""
    monkeypatch.setattr(sys, "argv", ["goodprior", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
