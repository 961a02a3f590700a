"""Time the tool-call parser on adversarial replies (issue 9): brace-, quote- and paren-heavy text.

    python benchmarks/parse_speed.py 200000                  # every pattern at 200,000 characters
    python benchmarks/parse_speed.py 20000 calls mixed       # chosen patterns only

Run with PYTHONPATH pointing at another checkout to time its parser (the "before" numbers in docs/measurement.md
came from main at c42d1d3 this way). A pattern repeated to N characters; one parse each; seconds printed.
"""

import sys
import time

from goodprior.measure.parse import parse_tool_calls

PATTERNS = {
    "nested-json": '{"a": ',
    "braces": '{x} {"a": [1, {"b": ',
    "mixed": '{"name": "send_email", "arguments": {"body": "(',
    "calls": "f(x=",
    "send_email-parens": 'send_email(to="a(b" ',
}


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv if a.isdigit()] or [200_000]
    chosen = [a for a in argv if not a.isdigit()] or list(PATTERNS)
    for n in sizes:
        for label in chosen:
            unit = PATTERNS[label]
            text = (unit * (n // len(unit) + 1))[:n]
            start = time.perf_counter()
            try:
                parse_tool_calls(text, {"send_email"})
                note = ""
            except Exception as exc:  # the old parser raised on some of these
                note = f" (raised {type(exc).__name__})"
            print(f"{label:18} {n:>9} chars: {time.perf_counter() - start:7.3f} s{note}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
