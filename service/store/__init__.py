"""The data layer: every read and write of the database, each in its own transaction.

It may import the spec, the public schemas and `service.db`; never the API or torch. The job
queue (`queue`) is the only module that changes a job's status.
"""
