"""`python -m shared.health [SERVICE]`: the container health check of a service (exit 0 = healthy).

Asks the service's own `/healthz` (see `shared.metrics`) on this host. Without SERVICE (the image's
generic HEALTHCHECK) the container is healthy when any of the four service ports answers healthy,
since one container runs one service.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from shared.metrics import SERVICE_OFFSETS, service_port
from shared.settings import SettingsError, load_settings


def probe(port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what was seen) for `http://127.0.0.1:<port>/healthz`."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}"
    except (OSError, urllib.error.URLError) as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"health: {exc}", file=sys.stderr)
        return 2
    services = args or list(SERVICE_OFFSETS)
    unknown = [s for s in services if s not in SERVICE_OFFSETS]
    if unknown:
        print(f"health: unknown service {unknown[0]!r}; known: {', '.join(SERVICE_OFFSETS)}", file=sys.stderr)
        return 2
    seen = []
    for service in services:
        port = service_port(settings, service)
        if port is None:
            print("health: metrics are off (OTN_PUSH_METRICS_PORT=0): no health endpoint", file=sys.stderr)
            return 2
        ok, what = probe(port)
        if ok:
            print(f"{service}: healthy ({what})")
            return 0
        seen.append(f"{service}: {what}")
    print("unhealthy: " + "; ".join(seen), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
