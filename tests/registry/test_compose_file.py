"""docker-compose.yml is a valid Compose file and wires the multi-host shape the suite runs.

No Docker engine runs here, so the file is checked as data: against the Compose Specification's JSON schema
(vendored in tests/support/compose-spec/), then for the wiring a schema cannot express: dependencies, the mir
commands and environment of tests/support/topology.py, database roles, health checks, the proxy and the bucket.
Every check is shown to fail on a deliberately broken copy of the file.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import yaml

from tests.support import topology

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "support" / "compose-spec" / "compose-spec.json"

Doc = dict[str, Any]


@cache
def _validator() -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()))


def parse(text: str) -> Doc:
    """The file as Compose reads it (``$$`` is a literal ``$``), with YAML aliases unshared so a copy can be
    broken in one place."""
    def unescape(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("$$", "$")
        if isinstance(value, list):
            return [unescape(v) for v in value]
        if isinstance(value, dict):
            return {k: unescape(v) for k, v in value.items()}
        return value

    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    unshared: Doc = unescape(json.loads(json.dumps(doc)))
    return unshared


# ---------------------------------------------------------------- reading services


def env(service: Doc) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def command(service: Doc) -> tuple[str, ...]:
    raw = service.get("command") or ()
    return tuple(shlex.split(raw) if isinstance(raw, str) else raw)


def depends_on(service: Doc) -> dict[str, str]:
    """Dependency name -> condition (the short list form means service_started)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def is_mir(service: Doc) -> bool:
    """Built from this repository, or a Python image that would run mir some other way."""
    image = str(service.get("image", ""))
    return "build" in service or image.startswith(("mir", "python"))


def with_command(doc: Doc, argv: tuple[str, ...]) -> dict[str, Doc]:
    return {name: s for name, s in doc["services"].items() if is_mir(s) and command(s) == argv}


def config_text(doc: Doc, service: Doc) -> str:
    """The inline ``configs:`` content a service mounts (file-based configs are not used here)."""
    names = [c if isinstance(c, str) else c["source"] for c in service.get("configs", [])]
    return "\n".join(str(doc.get("configs", {}).get(n, {}).get("content", "")) for n in names)


def one_shots(doc: Doc) -> set[str]:
    """Services something waits on to have finished: they run once and exit."""
    services = doc["services"]
    return {dep for s in services.values() for dep, cond in depends_on(s).items()
            if cond == "service_completed_successfully"}


def closure(doc: Doc, name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in depends_on(doc["services"].get(todo.pop(), {})):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def db_user(url: str) -> str:
    return urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1)).username or ""


def mc_scripts(doc: Doc) -> list[str]:
    """The shell text the MinIO client services run."""
    return [t for s in doc["services"].values() for t in mc_scripts_of(s)]


def mc_scripts_of(service: dict[str, Any]) -> list[str]:
    return [" ".join(command(service))] if str(service.get("image", "")).startswith("minio/mc") else []


# ---------------------------------------------------------------- checks (each returns its problems)


def check_interpolation(text: str) -> list[str]:
    """Compose replaces `$name` in values from the caller's environment: an unescaped `$` silently empties it."""
    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return [s for item in items for s in strings(item)]

    stray = {line.strip() for value in strings(yaml.safe_load(text)) for line in value.splitlines()
             if "$" in line.replace("$$", "")}
    return [f"unescaped $ (write $$): {line}" for line in sorted(stray)]


def check_schema(doc: Doc) -> list[str]:
    return [f"schema: {'/'.join(map(str, e.instance_path)) or '<root>'}: {e.message}"
            for e in _validator().iter_errors(doc)]


def check_depends_on(doc: Doc) -> list[str]:
    services = doc["services"]
    out = [f"{name} depends on missing service {dep}"
           for name, s in services.items() for dep in depends_on(s) if dep not in services]
    migrate = set(with_command(doc, topology.MIGRATE))
    buckets = {name for name, s in services.items() if str(s.get("image", "")).startswith("minio/mc")}
    for name in [*with_command(doc, topology.SERVE), *with_command(doc, topology.WORKER)]:
        if not (migrate | buckets) <= closure(doc, name):
            out.append(f"{name} may start before the schema is migrated and the bucket exists")
    return out


def check_commands(doc: Doc) -> list[str]:
    out = [f"{name} runs {list(command(s))}, not one of {[list(c) for c in topology.COMMANDS]}"
           for name, s in doc["services"].items() if is_mir(s) and command(s) not in topology.COMMANDS]
    counts = {argv: len(with_command(doc, argv)) for argv in topology.COMMANDS}
    if counts[topology.MIGRATE] != 1:
        out.append(f"want one migrate service, found {counts[topology.MIGRATE]}")
    if counts[topology.SERVE] < 2 or counts[topology.WORKER] < 2:
        out.append(f"want at least two API replicas and two workers, found {counts}")
    return out


def check_environment(doc: Doc) -> list[str]:
    out: list[str] = []
    roles = [(topology.MIGRATE, topology.MIGRATE_ENV, {}), (topology.SERVE, topology.API_ENV, topology.API_FIXED),
             (topology.WORKER, topology.WORKER_ENV, topology.WORKER_FIXED)]
    for argv, names, fixed in roles:
        for name, s in with_command(doc, argv).items():
            have = env(s)
            out += [f"{name} lacks {var}" for var in names if not have.get(var)]
            out += [f"{name} has {var}={have.get(var)!r}, want {want!r}"
                    for var, want in fixed.items() if have.get(var) != want]
    # What replicas and workers must agree on: one database, one bucket, one signing key, one public address.
    shared = {"MIR_DATABASE_URL", "MIR_BLOB_STORE", "MIR_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
              "MIR_SIGNING_PASSPHRASE", "MIR_HF_URL_SECRET", "MIR_PUBLIC_URL", "MIR_S3_PUBLIC_ENDPOINT_URL"}
    parts = {**with_command(doc, topology.SERVE), **with_command(doc, topology.WORKER)}
    for var in sorted(shared):
        values = {env(s)[var] for s in parts.values() if var in env(s)}
        if len(values) > 1:
            out.append(f"replicas and workers disagree on {var}")
    return out


def check_database_roles(doc: Doc) -> list[str]:
    """Migrations as the owner, everything else as the service role; the init SQL creates both, as used."""
    migrate = next(iter(with_command(doc, topology.MIGRATE).values()), None)
    if migrate is None:
        return ["no migrate service"]
    owner = db_user(env(migrate).get("MIR_MIGRATION_DATABASE_URL", ""))
    service = db_user(env(migrate).get("MIR_DATABASE_URL", ""))
    out = [] if owner and service and owner != service else [f"owner {owner!r} and service role {service!r} "
                                                             "must be two different roles"]
    parts = {**with_command(doc, topology.SERVE), **with_command(doc, topology.WORKER)}
    out += [f"{name} connects as {db_user(env(s).get('MIR_DATABASE_URL', ''))!r}, not the service role {service!r}"
            for name, s in parts.items() if db_user(env(s).get("MIR_DATABASE_URL", "")) != service]
    sql = "\n".join(config_text(doc, s) for s in doc["services"].values()
                    if str(s.get("image", "")).startswith("postgres"))
    passwords = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']*)'", sql))
    urls = {env(migrate).get("MIR_MIGRATION_DATABASE_URL", ""),
            *(env(s).get("MIR_DATABASE_URL", "") for s in parts.values())}
    for url in urls - {""}:
        parsed = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
        if passwords.get(parsed.username or "") != parsed.password:
            out.append(f"the init SQL does not create role {parsed.username!r} with the password its URL uses")
        if not re.search(rf"CREATE DATABASE {re.escape(parsed.path.lstrip('/'))} OWNER {owner}\b", sql):
            out.append(f"the init SQL does not create database {parsed.path.lstrip('/')!r} owned by {owner!r}")
    return sorted(set(out))


def check_healthchecks(doc: Doc) -> list[str]:
    once = one_shots(doc)
    out = [f"{name} runs for good but has no health check" for name, s in doc["services"].items()
           if name not in once and (not s.get("healthcheck", {}).get("test") or s["healthcheck"].get("disable"))]
    for name, s in with_command(doc, topology.SERVE).items():
        probe = " ".join(s.get("healthcheck", {}).get("test", []))
        port = env(s).get("MIR_PORT", "8470")
        if not any(f":{port}{path}" in probe for path in topology.HEALTH_PATHS):
            out.append(f"{name}'s health check does not probe {' or '.join(topology.HEALTH_PATHS)} on port {port}")
    return out


def check_proxy(doc: Doc) -> list[str]:
    proxies = {name: s for name, s in doc["services"].items()
               if str(s.get("image", "")).startswith(("nginx", "caddy"))}
    if len(proxies) != 1:
        return [f"want one reverse proxy (nginx or caddy), found {sorted(proxies)}"]
    name, proxy = next(iter(proxies.items()))
    conf = config_text(doc, proxy)
    apis = with_command(doc, topology.SERVE)
    out = [f"the proxy config does not send traffic to {api}:{env(s).get('MIR_PORT', '8470')}"
           for api, s in apis.items() if not re.search(rf"\b{re.escape(api)}:{env(s).get('MIR_PORT', '8470')}\b", conf)]
    wanted = ["proxy_request_buffering off", "client_max_body_size 0", "proxy_set_header Host",
              "proxy_set_header X-Forwarded-For", "proxy_set_header X-Forwarded-Proto", "proxy_read_timeout"]
    out += [f"the proxy config lacks `{directive}`" for directive in wanted if directive not in conf]
    public = {env(s).get("MIR_PUBLIC_URL", "") for s in apis.values()}
    published = {str(p).split(":")[-2] for p in proxy.get("ports", []) if ":" in str(p)}
    out += [f"MIR_PUBLIC_URL {url} is not a port {name} publishes ({sorted(published)})"
            for url in public if str(urlsplit(url).port) not in published]
    if not set(apis) <= set(depends_on(proxy)):
        out.append(f"{name} does not wait for every API replica")
    return out


def check_object_store(doc: Doc) -> list[str]:
    """The bucket MIR_BLOB_STORE names is the one the mc service creates, at the address mir uses."""
    parts = {**with_command(doc, topology.SERVE), **with_command(doc, topology.WORKER)}
    stores = {env(s).get("MIR_BLOB_STORE", "") for s in parts.values()}
    endpoints = {env(s).get("MIR_S3_ENDPOINT_URL", "") for s in parts.values()}
    scripts = mc_scripts(doc)
    created = {b for text in scripts for b in re.findall(r"mc mb (?:--[\w-]+ )*\w+/([\w.-]+)", text)}
    aliased = {u for text in scripts for u in re.findall(r"mc alias set \w+ (\S+)", text)}
    out = [f"MIR_BLOB_STORE {store} names a bucket the mc service does not create ({sorted(created)})"
           for store in stores if urlsplit(store).netloc not in created]
    out += [f"MIR_S3_ENDPOINT_URL {url} is not where the mc service creates the bucket ({sorted(aliased)})"
            for url in endpoints if url not in aliased]
    minio = [s for s in doc["services"].values() if str(s.get("image", "")).startswith("minio/minio")]
    roots = {env(s).get("MINIO_ROOT_USER") for s in minio}
    creators = [s for s in doc["services"].values() if any("mc admin user add" in t for t in mc_scripts_of(s))]
    users = {env(s).get("MIR_S3_ACCESS_KEY") for s in creators}
    policies = [t for s in creators for t in mc_scripts_of(s)]
    out += [f"{name}'s AWS_ACCESS_KEY_ID is not a user the mc service creates" for name, s in parts.items()
            if env(s).get("AWS_ACCESS_KEY_ID") not in users]
    out += [f"{name} signs with MinIO's root key" for name, s in parts.items()
            if env(s).get("AWS_ACCESS_KEY_ID") in roots]
    buckets = {urlsplit(store).netloc for store in stores}
    out += ["mir's MinIO user is not limited to its bucket" for text in policies
            if not buckets or any(f"arn:aws:s3:::{b}" not in text for b in buckets) or '"arn:aws:s3:::*"' in text
            or "mc admin policy attach" not in text]
    published = {str(p).split(":")[-2] for s in minio for p in s.get("ports", []) if ":" in str(p)}
    out += [f"{name}'s MIR_S3_PUBLIC_ENDPOINT_URL is not a port MinIO publishes" for name, s in parts.items()
            if "MIR_S3_PUBLIC_ENDPOINT_URL" in env(s)
            and str(urlsplit(env(s)["MIR_S3_PUBLIC_ENDPOINT_URL"]).port) not in published]
    return out


CHECKS: list[Callable[[Doc], list[str]]] = [
    check_schema, check_depends_on, check_commands, check_environment, check_database_roles,
    check_healthchecks, check_proxy, check_object_store,
]


def problems(text: str, mutate: Callable[[Doc], None] | None = None) -> list[str]:
    """Everything wrong with a compose file's text (after ``mutate`` breaks a parsed copy, for the tests)."""
    out = check_interpolation(text)
    doc = parse(text)
    if mutate is not None:
        mutate(doc)
    for check in CHECKS:
        out += check(doc)
    return out


# ---------------------------------------------------------------- tests


def test_the_compose_file_is_valid_and_wired() -> None:
    assert problems(COMPOSE.read_text()) == []


def _services(doc: Doc) -> dict[str, Doc]:
    services: dict[str, Doc] = doc["services"]
    return services


def _first(doc: Doc, argv: tuple[str, ...]) -> Doc:
    return next(iter(with_command(doc, argv).values()))


def _rename_migrate(doc: Doc) -> None:
    _services(doc)["migrations"] = _services(doc).pop("migrate")


def _break_proxy(doc: Doc) -> None:
    conf = doc["configs"]["proxy-conf"]
    conf["content"] = re.sub(r".*server api-2:.*\n", "", conf["content"])


BROKEN: dict[str, tuple[Callable[[Doc], None], str]] = {
    "a value of the wrong type": (
        lambda d: _services(d)["proxy"]["healthcheck"].update(interval=10), "schema: services/proxy/healthcheck"),
    "an unknown key": (lambda d: _services(d)["proxy"].update(port=8080), "'port' was unexpected"),
    "a dependency on a missing service": (_rename_migrate, "depends on missing service migrate"),
    "a replica that may start before migrations": (
        lambda d: _services(d)["api-1"]["depends_on"].pop("migrate"), "api-1 may start before the schema"),
    "a wrapped mir command": (
        lambda d: _first(d, topology.SERVE).update(command="sh -c 'pip install . && mir serve'"), "runs ['sh'"),
    "a replica without the HF URL secret": (
        lambda d: _services(d)["api-2"]["environment"].pop("MIR_HF_URL_SECRET"), "api-2 lacks MIR_HF_URL_SECRET"),
    "replicas with different signing passphrases": (
        lambda d: _services(d)["api-2"]["environment"].update(MIR_SIGNING_PASSPHRASE="other"),
        "disagree on MIR_SIGNING_PASSPHRASE"),
    "scan workers inside an API replica": (
        lambda d: _services(d)["api-1"]["environment"].update(MIR_EMBEDDED_WORKERS="1"),
        "api-1 has MIR_EMBEDDED_WORKERS='1'"),
    "a worker connecting as the owner": (
        lambda d: _services(d)["worker-1"]["environment"].update(
            MIR_DATABASE_URL=env(_services(d)["migrate"])["MIR_MIGRATION_DATABASE_URL"]),
        "worker-1 connects as 'mir_owner'"),
    "a password the init SQL does not set": (
        lambda d: _services(d)["migrate"]["environment"].update(
            MIR_MIGRATION_DATABASE_URL="postgresql+psycopg://mir_owner:changed@postgres:5432/mir"),
        "role 'mir_owner' with the password"),
    "a worker without a health check": (
        lambda d: _services(d)["worker-2"].pop("healthcheck"), "worker-2 runs for good but has no health check"),
    "a replica probing the wrong port": (
        lambda d: _services(d)["api-1"]["environment"].update(MIR_PORT="9999"), "api-1's health check"),
    "a proxy that forgets a replica": (_break_proxy, "does not send traffic to api-2:8470"),
    "a proxy that buffers uploads": (
        lambda d: d["configs"]["proxy-conf"].update(
            content=d["configs"]["proxy-conf"]["content"].replace("proxy_request_buffering off;", "")),
        "lacks `proxy_request_buffering off`"),
    "a blob store in a bucket nobody creates": (
        lambda d: _services(d)["api-1"]["environment"].update(MIR_BLOB_STORE="s3://other/blobs"),
        "s3://other/blobs names a bucket"),
    "an S3 key MinIO does not know": (
        lambda d: _services(d)["worker-2"]["environment"].update(AWS_ACCESS_KEY_ID="nobody"),
        "worker-2's AWS_ACCESS_KEY_ID"),
    "signs-with-root": (
        lambda d: _services(d)["api-1"]["environment"].update(AWS_ACCESS_KEY_ID="mir-minio-admin"),
        "api-1 signs with MinIO's root key"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_copy_is_caught(case: str) -> None:
    mutate, expected = BROKEN[case]
    found = problems(COMPOSE.read_text(), mutate)
    assert any(expected in p for p in found), found


def test_an_unescaped_dollar_is_caught() -> None:
    """`$http_host` in the proxy config would reach nginx as an empty string."""
    text = COMPOSE.read_text().replace("$$http_host", "$http_host", 1)
    assert any("unescaped $" in p and "$http_host" in p for p in problems(text))


def test_the_worker_health_check_names_what_mir_has() -> None:
    """The worker's probe is a Python one-liner over mir's own modules: each name it imports must exist."""
    doc = parse(COMPOSE.read_text())
    probe = _first(doc, topology.WORKER)["healthcheck"]["test"]
    source = probe[probe.index("-c") + 1]
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert imports
    for node in imports:
        module = importlib.import_module(node.module or "")
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def test_the_image_holds_every_package() -> None:
    """The services build `.`: its Dockerfile copies every package pyproject installs and runs no shell wrapper."""
    doc = parse(COMPOSE.read_text())
    contexts = {str(s["build"] if isinstance(s["build"], str) else s["build"].get("context", "."))
                for s in doc["services"].values() if "build" in s}
    assert contexts == {"."}
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include = \[([^\]]*)\]", pyproject)
    assert include is not None
    packages = re.findall(r'"(\w+)\*"', include.group(1))
    assert packages
    for package in packages:
        assert re.search(rf"^COPY {package}/ ", dockerfile, re.M), f"the Dockerfile does not copy {package}/"
    assert re.search(r"^RUN pip install \. ", dockerfile, re.M)
