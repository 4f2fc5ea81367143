"""The benchmark suite: a real cc2api server, a fast fake CLI, and what each figure's limit is.

``./scripts/bench`` (or ``python -m bench``) runs every figure side by side and prints
one table; ``--quick`` runs the same with small sizes, to see that it works.
"""
