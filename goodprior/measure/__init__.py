"""Measurement: log-prob propensity, generation grading, persona probe, statistics."""
