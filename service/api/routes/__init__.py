"""One router per resource: each route translates HTTP into a call of the store and back.

A route may import the store, the spec, the schemas, the plots and `service.api`; never
SQLAlchemy or `service.db`.
"""
