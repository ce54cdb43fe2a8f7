"""`python -m services.uploader`: run the uploader until SIGTERM / Ctrl-C."""

import sys

from services.uploader.app import build_app
from shared.broker import run_service


def main() -> int:
    return run_service("uploader", build_app)


if __name__ == "__main__":
    sys.exit(main())
