"""otn-push benchmarks (`make bench`): extract speed and memory against a floor and a notebook, and a push.

Not part of `make test`: run on a quiet machine, read the figures, never assert on them in tests.
"""
