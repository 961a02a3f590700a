"""Progress where no live bar can draw: plain lines at intervals, never silence."""

import time

from goodprior.progress import PlainProgress, make_progress


def test_plain_progress_reports_at_intervals_and_at_the_end():
    lines: list[str] = []
    with PlainProgress(every=0.05, write=lines.append) as progress:
        task = progress.add_task("  eval/4000losstok", total=10)
        progress.advance(task, 2)
        assert lines == []  # nothing before the first interval
        time.sleep(0.06)
        progress.advance(task, 3)
        assert lines[-1].startswith("eval/4000losstok: 5/10 (50%), 0:00 elapsed, eta 0:00")
        quick = progress.add_task("quick", total=1)
        progress.remove_task(quick)  # ran less than an interval: no line of its own
        assert not any(line.startswith("quick") for line in lines)
    assert lines[-1].startswith("eval/4000losstok: 5/10 (50%), 0:00 in all")


def test_progress_is_plain_when_stderr_is_not_a_terminal():
    assert isinstance(make_progress(), PlainProgress)  # pytest captures stderr
