"""Fuzz targets for every decoder of untrusted bytes (``docs/fuzzing.md``).

``targets`` names each target and its one allowed failure; ``mutate`` makes
structure-aware variants of valid encodings. The ``test_fuzz_*`` modules run
them under Hypothesis with modest example counts; ``bench/fuzz/run.py`` runs
the same targets for millions of inputs.
"""
