"""The HTTP face: the FastAPI app's routers (`routes`, one per resource), dependencies, errors.

It may import the store, the spec, the schemas and the plots; routes call the store and open
no transaction themselves, nor import SQLAlchemy.
"""
