"""Inspect AI entry point (pyproject `[project.entry-points.inspect_ai]`): makes `goodprior/honeypots` findable."""

from inspect_ai import task
from inspect_ai.util import registry_info

from goodprior.inspect_task import honeypots

# Inspect prefixes the package name only when it can tell goodprior is installed; from a source checkout (the
# build's goodprior.egg-info on sys.path hides the editable install's metadata) it would register a bare
# `honeypots`, so register the namespaced name explicitly in that case.
if registry_info(honeypots).name != "goodprior/honeypots":
    honeypots = task(name="goodprior/honeypots")(honeypots)
