"""Descent's worker: claims jobs from the database and trains them."""
