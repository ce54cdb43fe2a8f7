"""Keep secrets out of logs, status output and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# libpq also takes the password as a query parameter: `postgresql://u@h/db?password=secret`
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|pass)=)(?P<pw>[^&\s'\"]*)", re.IGNORECASE)
# `user:secret@host` with no scheme (a URL typed without its `postgresql://`)
_BARE_PASSWORD = re.compile(r"(?<![\w:/@.+-])(?P<user>[\w.+-]+):(?P<pw>[^@\s/:'\"]+)@(?=[\w.\[-])")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@")


def redact_url(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        url = urlunsplit(parts._replace(netloc=netloc))
    elif "://" not in url:  # `user:secret@host/db` without a scheme: urlsplit sees no password in it
        url = _BARE_PASSWORD.sub(lambda m: f"{m['user']}:***@", url)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['key']}***", url)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Mask passwords inside any URLs in the text, and every listed secret value."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _BARE_PASSWORD.sub(lambda m: f"{m['user']}:***@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['key']}***", text)
    for secret in secrets:
        if secret:
            text = _standing_alone(secret).sub("***", text)
    return text


def _standing_alone(secret: str) -> re.Pattern[str]:
    # a secret is masked where it stands alone, not inside a longer word: a password that is a common
    # word ("detection") turned `nsbs_matched_detections` into `nsbs_matched_***s`, scrambling the logs
    # and showing readers where the word was
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")
