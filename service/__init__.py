"""Descent's service: the HTTP API, the job spec, the data layer, the client and pictures.

Its rooms: `spec` (the contract), `store` (the database), `api` (HTTP), `client`, `plots`,
`db` (tables, engine, migrations), `schemas` (public answers); `cli` supervises processes.
"""
