"""The public shapes of what the API answers (a job, a page, a sweep, a dataset, an error).

Pure pydantic, kept apart from the tables: it may import the spec, never the store or the API.
"""
