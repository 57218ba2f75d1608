"""lite measured against legacypipe (and the truth): both engines' products of the same bricks.

``inputs`` reads one engine's run of a brick (catalogue, maskbits, depth maps, the ledger's
cost), ``metrics`` matches and scores the two runs, ``plots`` and ``report`` show the result,
``runs`` ties them together for the ``lsdr compare`` command and the ``compare`` flow.
"""
