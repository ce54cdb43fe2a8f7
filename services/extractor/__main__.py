"""`python -m services.extractor` (run several for parallel extracts: they compete for jobs)."""

from __future__ import annotations

import sys

from services.extractor.app import build_app
from shared.broker import run_service


def main() -> int:
    return run_service("extractor", build_app)


if __name__ == "__main__":
    sys.exit(main())
