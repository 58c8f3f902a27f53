"""The training code: a spec and a recorder in, a result out; every loop on one run skeleton.

May import torch, numpy, scikit-learn, service.spec and service.errors; nothing of HTTP or SQL.
"""
