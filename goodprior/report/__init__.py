"""The comparison report: numbers (compare.py), plots (plots.py), Markdown and HTML (render.py)."""
