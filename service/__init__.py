"""Descent's service: the HTTP API, settings, the job spec and the data layer."""
