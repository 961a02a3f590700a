"""Honeypot scenario families: schema, loading, and expansion into instances."""
