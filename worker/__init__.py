"""Descent's worker: claims jobs from the database, trains them, and records how each ended.

May import worker.training and any of the service but its HTTP face (service.api, FastAPI).
"""
