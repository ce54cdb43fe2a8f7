"""Security of a whole push: the four services as processes on a generated network, every connection made
with a password, the node and own databases reached through a least-privilege account (README "Database
accounts", from `otn-push nodes grants`) and RabbitMQ through a user limited to the push's own names.

Then: no secret in anything the services and the CLI print (logs, status, errors) or send (emails); each
email goes only to its project's contacts and lists only its files; qualified, unqualified and sentinel
extracts show no other project's animal ids, and species stay hidden where the tag project does not share.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from otn_push.demo.generate import generate_network
from otn_push.demo.run import DemoPaths, start_services, stop_services, wait_consuming
from shared.grants import grant_plan
from shared.nodes import connection, ensure_database, init_schema
from shared.settings import Settings
from tests.conftest import PG_ADMIN, pg_url
from tests.integration.conftest import Rabbit
from tests.smtp_sink import Inbox, free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "otn-push")
PUSH = dt.date(2025, 9, 10)
RABBITMQCTL = shutil.which("rabbitmqctl")
KINDS = "(?:matched|qualified|unqualified|sentinel_tag)"


class Secrets:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.db = f"pgPw{tag}Zq"
        self.smtp = f"smtpPw{tag}Xy"
        self.amqp = f"amqpPw{tag}Wv"

    def all(self) -> list[str]:
        return [self.db, self.smtp, self.amqp]


@contextmanager
def smtp_with_auth(user: str, password: str) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server that takes mail only after AUTH with this user and password."""

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok)

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def rabbitmqctl(*args: str) -> None:
    assert RABBITMQCTL is not None
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=120)


@contextmanager
def rabbit_user(name: str, password: str, names: str) -> Iterator[None]:
    """A RabbitMQ user on the shared broker that may only configure, write and read `names` (a regex)."""
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", "/", name, names, names, names)
        yield
    finally:
        rabbitmqctl("delete_user", name)


def with_password(url: str, user: str, password: str) -> str:
    return re.sub(r"^postgresql://[^@/]*@", f"postgresql://{user}:{password}@", url)


async def prepare_nodes(admin_nodes: dict[str, str], role: str, password: str) -> None:
    for node, url in admin_nodes.items():
        await ensure_database(node, url)
        async with connection(node, url) as conn:
            await init_schema(conn)
    await generate_network(admin_nodes, seed=11, push_date=PUSH, detections=1500, home_node="OTN")
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    finally:
        await admin.close()
    plan_settings = Settings(nodes=admin_nodes, home_node="OTN", _env_file=None)  # type: ignore[call-arg]
    for grants in grant_plan(plan_settings, role):
        async with connection("admin", grants.url) as conn:
            for statement in grants.statements:
                await conn.execute(statement)


async def drop_all(admin_nodes: dict[str, str], role: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        for url in admin_nodes.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


async def fetch_all(admin_nodes: dict[str, str], sql: str) -> list[asyncpg.Record]:
    found: list[asyncpg.Record] = []
    for node, url in admin_nodes.items():
        async with connection(node, url) as conn:
            found += await conn.fetch(sql)
    return found


def texts_of(message: EmailMessage) -> list[str]:
    """The raw message and every decoded text part (a base64 part would hide a secret from the raw)."""
    found = [message.as_string()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found.append(part.get_content())
    return found


def extract_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv"))
        rows = list(csv.reader(io.StringIO(zf.read(name).decode("utf-8-sig"), newline="")))
    return rows[0], rows[1:]


@pytest.mark.skipif(RABBITMQCTL is None, reason="rabbitmqctl is needed to make a RabbitMQ user")
def test_a_push_with_secrets_and_least_privilege_leaks_nothing(rabbit: Rabbit, tmp_path: Path) -> None:
    secrets = Secrets()
    tag = secrets.tag
    role = f"otn_push_sec_{tag}"
    admin_nodes = {n: pg_url(f"otn_push_sec_{tag}_{n.lower()}") for n in ("OTN", "ACT", "FACT")}
    nodes = {n: with_password(u, role, secrets.db) for n, u in admin_nodes.items()}
    exchange = f"otn.push.sec{tag}"
    amqp_user = f"otn_push_sec_{tag}"
    amqp_url = f"amqp://{amqp_user}:{secrets.amqp}@127.0.0.1:5672/"
    smtp_user = "otn-mailer"
    paths = DemoPaths(tmp_path / "push")
    for folder in (paths.store, paths.staging, paths.outbox, paths.logs):
        folder.mkdir(parents=True)
    env = {
        "OTN_PUSH_NODES": ";".join(f"{n}={u}" for n, u in nodes.items()),
        "OTN_PUSH_HOME_NODE": "OTN",
        "OTN_PUSH_AMQP_URL": amqp_url,
        "OTN_PUSH_EXCHANGE": exchange,
        "OTN_PUSH_STORE_DIR": str(paths.store),
        "OTN_PUSH_STAGING_DIR": str(paths.staging),
        "OTN_PUSH_OUTBOX_DIR": str(paths.outbox),
        "OTN_PUSH_SEND_MAIL": "true",
        "OTN_PUSH_SMTP_HOST": "127.0.0.1",
        "OTN_PUSH_SMTP_USER": smtp_user,
        "OTN_PUSH_SMTP_PASSWORD": secrets.smtp,
        "OTN_PUSH_AUTO_PUSH": "false",
        "OTN_PUSH_RETRY_BASE_DELAY": "0.2",
        "OTN_PUSH_LOG_LEVEL": "DEBUG",  # the most a service ever prints
    }
    settings = Settings(
        nodes=nodes,
        home_node="OTN",
        amqp_url=amqp_url,
        exchange=exchange,
        _env_file=None,  # type: ignore[call-arg]
    )
    rabbit.track(settings)
    printed: list[tuple[str, str]] = []  # (what, text)

    def cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("OTN_PUSH_")}
        full.update(env, COLUMNS="200", **(extra or {}))
        done = subprocess.run([CLI, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)
        printed.append((f"otn-push {' '.join(args)}", done.stdout + done.stderr))
        return done

    asyncio.run(prepare_nodes(admin_nodes, role, secrets.db))
    names = rf"^otn[.-]push[.-]sec{tag}(\..+)?$"
    try:
        with (
            rabbit_user(amqp_user, secrets.amqp, names),
            smtp_with_auth(smtp_user, secrets.smtp) as (inbox, port),
        ):
            env["OTN_PUSH_SMTP_PORT"] = str(port)
            services = start_services(env, paths, ROOT)
            try:
                asyncio.run(wait_consuming(settings, services))
                started = cli("push", "start", "--push-date", PUSH.isoformat(), "--wait", "--timeout", "400")
                assert started.returncode == 0, started.stdout + started.stderr
                status = cli("push", "status", "--push-date", PUSH.isoformat(), "--json")
                cli("push", "status", "--push-date", PUSH.isoformat())
                cli("list", "show", "--push-date", PUSH.isoformat())
                listed = cli("dlq", "list", "--json")
                assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
                cli("nodes", "check")
                cli("status", "--push-date", PUSH.isoformat())
                cli("status", "--json")
                # a management API that cannot be reached: its error names the URL, masked
                management = {"OTN_PUSH_MANAGEMENT_URL": f"http://monitor:{secrets.amqp}@127.0.0.1:1"}
                cli("status", "--push-date", PUSH.isoformat(), extra=management)
                report = tmp_path / "report.html"
                reported = cli("report", "--push-date", PUSH.isoformat(), "--out", str(report))
                assert reported.returncode == 0, reported.stderr
                printed.append(("report.html", report.read_text()))
                # errors print the URLs they are about: with the password masked
                down = env["OTN_PUSH_NODES"].replace("127.0.0.1:5432", "127.0.0.1:1", 1)
                failed = cli("list", "show", "--push-date", PUSH.isoformat(), extra={"OTN_PUSH_NODES": down})
                assert failed.returncode != 0 and "127.0.0.1:1" in failed.stderr
                bad_amqp = amqp_url.replace(":5672", ":1")
                failed = cli("dlq", "list", extra={"OTN_PUSH_AMQP_URL": bad_amqp})
                assert failed.returncode != 0
            finally:
                stop_services(services)
            messages = inbox.snapshot()
        doc = json.loads(status.stdout)
        assert doc["run"]["state"] == "completed" and doc["counts"] == {"completed": len(doc["jobs"])}
        assert all(svc.process.returncode == 0 for svc in services)
        for svc in services:
            printed.append((f"{svc.name} log", svc.log.read_text(errors="replace")))
        for _, message in messages:
            printed += [(f"email {message['X-OTN-Push']}", text) for text in texts_of(message)]
        printed += [(str(p), p.read_text(errors="replace")) for p in paths.outbox.rglob("*") if p.is_file()]

        # 1. no secret anywhere
        for what, text in printed:
            for secret in secrets.all():
                assert secret not in text, f"{what} shows a secret"
        assert any("***" in text for _, text in printed), "no URL with a password was ever shown masked"

        # 2. each email only to its project's contacts, listing only its own files
        contacts = asyncio.run(
            fetch_all(
                admin_nodes,
                "SELECT cp.collectioncode AS project, lower(c.email) AS email FROM obis.contacts_projects cp "
                "JOIN obis.contacts c USING (contact_id)",
            )
        )
        by_project: dict[str, set[str]] = {}
        for rec in contacts:
            by_project.setdefault(rec["project"], set()).add(rec["email"])
        cc = {settings.smtp_cc.lower()}
        emailed = set()
        assert messages
        for recipients, message in messages:
            push, project = message["X-OTN-Push"].split()
            assert push == PUSH.isoformat()
            emailed.add(project)
            assert {r.lower() for r in recipients} - cc <= by_project[project], project
            decoded = " ".join(texts_of(message)[1:])
            files = set(
                re.findall(r"\b([a-z0-9_-]+?)_" + KINDS + r"_detections_\d{4}\.(?:zip|parquet)", decoded)
            )
            assert files == {project.lower()}, (project, files)  # the codes of the files it lists
        assert emailed == {j["extract"].split(",")[0] for j in doc["jobs"]}

        # 3. no other project's animal ids in q/u/s extracts; species hidden where not shared
        animals = asyncio.run(
            fetch_all(admin_nodes, "SELECT catalognumber, collectioncode FROM obis.otn_animals")
        )
        owner = {rec["catalognumber"]: rec["collectioncode"] for rec in animals}
        sharing = asyncio.run(
            fetch_all(
                admin_nodes,
                "SELECT node, collectioncode, share_species_with_array_owners AS s FROM obis.otn_resources",
            )
        )
        hidden = {f"{rec['node']}.{rec['collectioncode']}" for rec in sharing if rec["s"] is False}
        project_kind = {rec["collectioncode"]: rec["kind"] for rec in asyncio.run(
            fetch_all(admin_nodes, "SELECT collectioncode, ois_project_type AS kind FROM obis.otn_resources")
        )}  # fmt: skip
        kinds_seen: set[str] = set()
        project_kinds_seen: set[str] = set()
        hidden_rows = shown_rows = 0
        for path in paths.store.rglob("*.zip"):
            match = re.fullmatch(
                r"(.+)_(matched|qualified|unqualified|sentinel_tag)_detections_\d{4}", path.stem
            )
            assert match, path.name
            project, kind = match[1].upper(), match[2]
            kinds_seen.add(kind)
            project_kinds_seen.add(project_kind[project])
            header, rows = extract_rows(path)
            if kind == "matched":
                catalogs = {row[header.index("catalogNumber")] for row in rows}
                assert all(owner.get(c) == project for c in catalogs), (path.name, catalogs)
                continue
            for row in rows:
                foreign = {v for v in row if v in owner and owner[v] != project}
                assert not foreign, f"{path.name} reveals animal ids {foreign}"
            if kind == "qualified":
                tracker, sci = header.index("trackerCode"), header.index("scientificName")
                for row in rows:
                    if row[tracker] in hidden:
                        hidden_rows += 1
                        assert row[sci] == "", f"{path.name}: species of {row[tracker]} shown"
                    else:
                        shown_rows += bool(row[sci])
        assert kinds_seen == {"matched", "qualified", "unqualified", "sentinel_tag"}, kinds_seen
        assert project_kinds_seen == {"tracker", "deployment", "data"}, project_kinds_seen
        assert hidden_rows > 0, "the network has no qualified row of a non-sharing tag project to check"
        assert shown_rows > 0, "species of sharing tag projects should be shown"
    finally:
        asyncio.run(drop_all(admin_nodes, role))
