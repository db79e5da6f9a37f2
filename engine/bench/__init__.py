"""The benchmark suite (``python -m engine bench``, ``make bench``): cases, one interpreter per case,
analytic FLOP counts, matmul peaks, per-run peak memory and the JSON-lines report (resources/bench/).

Top layer, beside cli/: may import every engine package (a case runs through ``pipeline.job``, as the
segment command does); nothing in the engine imports it but cli/ (the ``bench`` command).
"""
