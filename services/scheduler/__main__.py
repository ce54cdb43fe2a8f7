"""`python -m services.scheduler`"""

from __future__ import annotations

import sys

from services.scheduler.app import build_app
from shared.broker import run_service


def main() -> int:
    return run_service("scheduler", build_app)


if __name__ == "__main__":
    sys.exit(main())
