"""`python -m services.notifier`: run the notifier until SIGTERM / Ctrl-C."""

import sys

from faststream import FastStream

from services.notifier.app import build_app
from services.notifier.render import TemplateProblem
from shared.broker import run_service
from shared.settings import Settings, SettingsError


def build(settings: Settings) -> FastStream:
    try:
        return build_app(settings)
    except TemplateProblem as exc:  # the message names OTN_PUSH_TEMPLATES_DIR or the template
        raise SettingsError(str(exc)) from None


def main() -> int:
    return run_service("notifier", build)


if __name__ == "__main__":
    sys.exit(main())
