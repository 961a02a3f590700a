"""Test helpers for kill-and-resume tests: a backend that dies mid-run, and a silent progress bar."""

from contextlib import contextmanager


@contextmanager
def quiet(description, total, done=0):
    yield lambda n: None


class Crashing:
    """Wraps a backend and raises KeyboardInterrupt after `after` calls of `method` ("score" or "generate"): a
    run killed mid-flight."""

    def __init__(self, inner, after, method="score"):
        self.inner, self.after, self.method, self.calls = inner, after, method, 0

    def __getattr__(self, name):
        if name != self.method:
            return getattr(self.inner, name)

        def call(requests):
            self.calls += 1
            if self.calls > self.after:
                raise KeyboardInterrupt
            return getattr(self.inner, name)(requests)

        return call
