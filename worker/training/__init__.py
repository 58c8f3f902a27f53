"""The training code: it takes a spec and a recorder, and knows nothing of HTTP or SQL."""
