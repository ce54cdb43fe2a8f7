"""`python -m services.uploader`: run the uploader until SIGTERM / Ctrl-C."""

import asyncio
import sys

from services.uploader.app import build_app
from shared.logs import setup_logging
from shared.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"uploader: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings, "uploader")
    asyncio.run(build_app(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
