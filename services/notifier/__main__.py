"""`python -m services.notifier`: run the notifier until SIGTERM / Ctrl-C."""

import asyncio
import sys

from services.notifier.app import build_app
from services.notifier.render import TemplateProblem
from shared.logs import setup_logging
from shared.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings, "notifier")
    try:
        app = build_app(settings)
    except (TemplateProblem, SettingsError) as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 2
    asyncio.run(app.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
