"""Pydantic models of the API, kept apart from the SQLAlchemy tables."""
