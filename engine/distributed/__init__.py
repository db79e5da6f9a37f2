"""Runs on a Dask cluster: connecting (cluster.py), the worker side (worker.py), the executor (executor.py).

Only imported for ``--executor dask`` and ``python -m engine cluster``: dask and distributed are not
needed otherwise.
"""
