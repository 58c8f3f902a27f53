"""The database itself: the SQLAlchemy tables, the engine and its transactions, the migrations.

It may import SQLAlchemy and Alembic only; `service.store` is the only room that uses it.
"""
