"""Repair data: spec-driven synthetic training sets for every arm of the study."""
