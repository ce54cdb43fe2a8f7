"""One settings class for every service and the CLI, read once from the environment or `.env`."""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import SplitResult, parse_qsl, urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.redact import redact_url

# python-dotenv says "could not parse statement starting at line 2" once per reading, naming no file;
# `env_file_problems` says it once, with the file
logging.getLogger("dotenv.main").setLevel(logging.ERROR)

DEFAULT_NODES = (
    "OTN=postgresql://postgres@127.0.0.1:5432/otn_push_demo_otn;"
    "ACT=postgresql://postgres@127.0.0.1:5432/otn_push_demo_act;"
    "FACT=postgresql://postgres@127.0.0.1:5432/otn_push_demo_fact"
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the setting and never its secret value."""


ENV_FILE = Path(".env")  # beside where a command runs, as docker compose reads its own
PLONE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def _split(url: str, prefix: str) -> SplitResult:
    """The URL's parts, with a port that is a number from 1 to 65535 (else ValueError naming it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "port must be a number from 1 to 65535" if "port" in str(exc).lower() else str(exc)
        raise ValueError(f"{prefix}{reason} (got {redact_url(url)!r})") from None
    if port == 0:
        raise ValueError(f"{prefix}port must be a number from 1 to 65535 (got {redact_url(url)!r})")
    return parts


def _http_parts(value: str | None) -> SplitResult | None:
    """An http(s) URL's parts; None for no value or an empty one (compose passes an unset one empty)."""
    if value is None or not value.strip():
        return None
    parts = _split(value, "")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL (got {redact_url(value)!r})")
    return parts


def check_postgres_url(what: str | None, url: str) -> None:
    prefix = f"{what}: " if what else ""
    parts = _split(url, prefix)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+asyncpg"} or "://" not in url:
        raise ValueError(f"{prefix}URL must start with postgresql:// (got {redact_url(url)!r})")
    if not parts.path.strip("/"):
        raise ValueError(f"{prefix}URL names no database (got {redact_url(url)!r})")
    for key, value in parse_qsl(parts.query):
        if key == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"{prefix}sslmode={value!r} is not one of {', '.join(sorted(SSL_MODES))}")


def parse_nodes(raw: str) -> dict[str, str]:
    """Parse `NAME=postgresql://…;NAME=…` into an ordered mapping of node name to database URL."""
    nodes: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(";")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        name, url = name.strip().upper(), url.strip()
        if not sep or not name or not url:
            raise ValueError(f"expected NAME=postgresql://… but got {redact_url(part)!r}")
        if not name.replace("_", "").isalnum():
            raise ValueError(f"node name {name!r} must be letters, digits or _")
        check_postgres_url(f"node {name}", url)
        if name in nodes:
            raise ValueError(f"node {name} is listed twice")
        nodes[name] = url
    if not nodes:
        raise ValueError("no node configured")
    return nodes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OTN_PUSH_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    nodes: Annotated[dict[str, str], NoDecode] = Field(default_factory=lambda: parse_nodes(DEFAULT_NODES))
    home_node: str = "OTN"
    database_url: str | None = None
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "otn.push"

    # where uploaded extracts go: a local folder (the embedded default), a WebDAV server or a Plone site
    store: str = "folder"
    store_dir: Path = Path("var/store")
    store_url: str | None = None  # public base URL of store_dir, for the links in emails (else file://)
    plone_url: str | None = None  # the site, e.g. http://127.0.0.1:8080/Plone
    plone_user: str | None = None
    plone_password: SecretStr | None = None
    # Plone folders under the site: `<plone_path>/[<node lower>/]<code lower>/detection-extracts/`
    plone_path: str = "data/repository"
    plone_node_folders: bool = False
    webdav_url: str | None = None  # the collection that holds `<code lower>/detection-extracts/`
    webdav_user: str | None = None
    webdav_password: SecretStr | None = None
    store_timeout: float = Field(default=60.0, gt=0)
    store_start_wait: float = Field(default=30.0, ge=0)  # an unreachable store at start, then stop
    staging_dir: Path = Path("var/staging")
    outbox_dir: Path = Path("var/outbox")

    send_mail: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "otndc@dal.ca"
    smtp_cc: str = "otndc@dal.ca"
    smtp_starttls: bool = False
    smtp_timeout: float = Field(default=30.0, gt=0)
    templates_dir: Path | None = None
    # the push's ops email (issue 5): operators' addresses (empty = off), the report link, where to write it
    ops_email: str = ""
    report_url: str | None = None  # a template with {push_date}
    report_dir: Path | None = None

    extract_format: str = "2025"
    push_dates: Annotated[list[dt.date], NoDecode] = Field(default_factory=list)
    auto_push: bool = True
    quiet_period: float = Field(default=3600.0, ge=0)
    scheduler_tick: float = Field(default=60.0, gt=0)

    prefetch: int = Field(default=1, ge=1)
    delivery_limit: int = Field(default=5, ge=1)
    retry_attempts: int = Field(default=4, ge=1)
    retry_base_delay: float = Field(default=1.0, ge=0)
    # SIGTERM: how long a service lets the message in hand finish before handing it back and exiting
    shutdown_grace: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = False

    # operations: metrics/health port of each service = metrics_port + its offset (0 turns them off)
    metrics_port: int = Field(default=9460, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # RabbitMQ management HTTP API, e.g. http://guest:guest@127.0.0.1:15672 (else AMQP alone is read)
    management_url: str | None = None
    # `otn-push status` flags (exit code 1) beyond these
    status_max_ready: int = Field(default=10_000, ge=0)
    status_max_message_age: float = Field(default=3600.0, ge=0)
    status_max_outbox_backlog: int = Field(default=100, ge=0)
    status_max_outbox_age: float = Field(default=300.0, ge=0)
    status_max_node_latency: float = Field(default=2.0, ge=0)
    status_max_failed_jobs: int = Field(default=0, ge=0)

    @field_validator("nodes", mode="before")
    @classmethod
    def _nodes(cls, value: object) -> object:
        return parse_nodes(value) if isinstance(value, str) else value

    @field_validator("push_dates", mode="before")
    @classmethod
    def _push_dates(cls, value: object) -> object:
        if isinstance(value, str):
            return [dt.date.fromisoformat(v.strip()) for v in value.replace(";", ",").split(",") if v.strip()]
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp(cls, value: str) -> str:
        if _split(value, "").scheme not in {"amqp", "amqps"}:
            raise ValueError(f"must be an amqp:// or amqps:// URL (got {redact_url(value)!r})")
        return value

    @field_validator("management_url")
    @classmethod
    def _management(cls, value: str | None) -> str | None:
        return value if _http_parts(value) is not None else None  # its credentials belong in the URL

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        # queue names are made from it: letters, digits and . _ - only, as RabbitMQ's own names
        if not value or not all(c.isascii() and (c.isalnum() or c in "._-") for c in value):
            raise ValueError(f"must be letters, digits, '.', '_' or '-' (got {value!r})")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is not None:
            check_postgres_url(None, value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        kind = value.strip().lower()
        if kind not in {"folder", "webdav", "plone"}:
            raise ValueError("must be folder, webdav or plone")
        return kind

    @field_validator("plone_url", "webdav_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        parts = _http_parts(value)
        if parts is None or value is None:
            return None
        if parts.password:
            secret = "OTN_PUSH_" + (info.field_name or "").removesuffix("_url").upper() + "_PASSWORD"
            raise ValueError(f"must not carry a password: set {secret}")
        return value.rstrip("/")

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        # the base of every link in the researchers' emails: a typo must stop here, not reach their inbox
        if value is None or not value.strip():
            return None
        parts = _split(value, "")
        if parts.scheme == "file" and parts.path:
            return value.rstrip("/")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"must be an http://, https:// or file:// URL (got {redact_url(value)!r})")
        return value.rstrip("/")

    @field_validator("plone_path")
    @classmethod
    def _plone_path(cls, value: str) -> str:
        for segment in value.strip("/").split("/"):
            if segment and not PLONE_ID.fullmatch(segment):
                raise ValueError(
                    f"segment {segment!r} is no Plone id (letters, digits, '-', '_' and '.', not first)"
                )
        return value

    @field_validator("extract_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in {"2025", "legacy"}:
            raise ValueError("must be 2025 or legacy")
        return value

    @field_validator("home_node")
    @classmethod
    def _home_is_a_node(cls, value: str, info: ValidationInfo) -> str:
        # a field validator (not a model one) so that the error names OTN_PUSH_HOME_NODE
        home = value.strip().upper()
        nodes = info.data.get("nodes")
        if isinstance(nodes, dict) and home not in nodes:
            raise ValueError(f"home node {home} is not one of the nodes ({', '.join(nodes)})")
        return home

    @property
    def home_url(self) -> str:
        return self.nodes[self.home_node]

    @property
    def own_database_url(self) -> str:
        """Where otn-push keeps its own tables: OTN_PUSH_DATABASE_URL, else the home node's database."""
        return self.database_url or self.home_url

    def secrets(self) -> list[str]:
        """Every secret value, so that tests and log filters can check none leaks."""
        found = [
            secret.get_secret_value()
            for secret in (self.smtp_password, self.plone_password, self.webdav_password)
            if secret is not None
        ]
        for url in [*self.nodes.values(), self.amqp_url, self.database_url or "", self.management_url or ""]:
            parts = urlsplit(url)
            if parts.password:
                found.append(parts.password)
            found += [v for k, v in parse_qsl(parts.query) if k.lower() in {"password", "passwd", "pass"}]
        return [s for s in found if s]


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad setting raises SettingsError with one line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{ENV_FILE.resolve()}: not UTF-8 text (byte {exc.start}): fix or remove it"
        ) from None
    except OSError as exc:
        raise SettingsError(f"{ENV_FILE.resolve()}: cannot be read ({exc.strerror or exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "OTN_PUSH_" + "_".join(str(p) for p in first["loc"]).upper() if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"setting {name}: {message}") from None


# read by the test suite, the benchmark and the compose file's entry script: not settings of the services
OTHER_VARIABLES = frozenset(
    {
        "OTN_PUSH_BENCH_PG",
        "OTN_PUSH_DEMO_DETECTIONS",
        "OTN_PUSH_DEMO_SEED",
        "OTN_PUSH_IMAGE",
        "OTN_PUSH_NODES_INIT",
        "OTN_PUSH_PLONE_CACHE",
        "OTN_PUSH_TEST_AMQP",
        "OTN_PUSH_TEST_PG",
    }
)


def setting_warnings(environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE) -> list[str]:
    """What the CLI and the services warn about before they start: `.env` lines that were ignored and
    OTN_PUSH_* variables that are no setting."""
    problems = env_file_problems(env_file) if env_file is not None else []
    return problems + unknown_variables(environ, env_file)


def env_file_problems(env_file: Path) -> list[str]:
    """One line per line of `env_file` that is no NAME=VALUE statement (ignored by every reader); the
    line itself is not shown, since it may hold a secret."""
    if not env_file.is_file():
        return []
    try:
        with env_file.open(encoding="utf-8") as stream:
            bad = [binding.original.line for binding in parse_stream(stream) if binding.error]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{env_file.resolve()}: cannot be read ({type(exc).__name__})"]
    return [f"{env_file.resolve()} line {line}: not a NAME=VALUE statement, ignored" for line in bad]


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: Path | None = ENV_FILE
) -> list[str]:
    """One line per OTN_PUSH_* variable (environment or `.env`) that is no setting: a typo, most likely,
    whose value would otherwise be ignored without a word (OTN_PUSH_NODE instead of OTN_PUSH_NODES)."""
    names = set(os.environ if environ is None else environ)
    if env_file is not None and env_file.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):  # said by env_file_problems
            names |= {n for n in dotenv_values(env_file) if n}
    fields = {f"OTN_PUSH_{name.upper()}" for name in Settings.model_fields}
    lines = []
    for name in sorted(names):
        upper = name.upper()  # settings are read whatever the case of the name
        if not upper.startswith("OTN_PUSH_") or upper in fields or upper in OTHER_VARIABLES:
            continue
        if upper.startswith("OTN_PUSH_REQUIRE_"):
            continue
        close = difflib.get_close_matches(upper, sorted(fields), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name} is not an otn-push setting and is ignored{hint}")
    return lines
