"""Pictures: a job's or a sweep's curves and an optimizer's path over its test function, as PNG.

Pure drawing on matplotlib and numpy: it takes numbers and specs, never the database.
"""
