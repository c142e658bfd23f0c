"""The web interface in Debian's Chromium, against the real server, with data pushed by the real CLI and SDK.

Each flow an auditor or platform engineer depends on is clicked through once; screenshots of every page are
saved (``screenshots`` fixture); axe-core checks every page for serious or critical accessibility violations.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.browser import only_local, serious_violations, sign_in
from tests.support.gate import Namespace, safetensors_model, wait_scanned
from tests.support.server import LiveServer
from tests.support.trees import make_tree

HF_SHA = "89abcdef0123456789abcdef0123456789abcdef"
HOSTILE = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 1">'
           '<a href="javascript:window.__pwned = 1">click me</a> {{ 7*7 }}')
PASS = {"MIR_TEST_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture(scope="module")
def data(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ns1: a dataset, a model trained on it (signed by alice, via the CLI), a quantized child, a hostile
    description; ns2: one model nobody with read:ns1 may see."""
    tmp = tmp_path_factory.mktemp("ui-data")
    ns1 = Namespace(server, tmp, "ns1")
    client = ns1.client
    corpus = make_tree(tmp / "corpus", {"train.jsonl": b'{"text": "hello"}\n' * 20})
    client.push(corpus, "ns1/corpus@1", kind="dataset")
    wait_scanned(client, "ns1/corpus@1")
    server.cli("keygen", "-o", str(tmp / "alice"), "--passphrase-env", "MIR_TEST_PASSPHRASE", check=True, **PASS)
    server.cli("keys", "add", str(tmp / "alice.pub"), "--namespace", "ns1", "--label", "alice", check=True)
    server.cli("push", str(safetensors_model(tmp / "bert")), "ns1/bert@1.0", "--sign", str(tmp / "alice.pem"),
               "--passphrase-env", "MIR_TEST_PASSPHRASE", "--parent", "trained_on:ns1/corpus@1",
               "--parent", f"fine_tuned_from:hf:org/base@{HF_SHA}", "--description", "a sentiment model",
               check=True, **PASS)
    wait_scanned(client, "ns1/bert@1.0")
    client.set_alias("ns1/bert", "prod", "1.0")
    ns1.push(safetensors_model(tmp / "q4", seed=1), "ns1/bert-q4@1",
             lineage=[{"type": "quantized_from", "parent": {"ref": "ns1/bert@1.0"}, "attributes": {"bits": 4}}])
    hostile_source = {"external": {"kind": "url", "url": "https://x.example/<script>", "digest": "sha256:" + "ab" * 32}}
    ns1.push(make_tree(tmp / "evil", {"notes.txt": b"harmless"}), "ns1/evil@1", sign=False, description=HOSTILE,
             lineage=[{"type": "derived_from", "parent": hostile_source, "attributes": {"note": HOSTILE}}])
    client.push(make_tree(tmp / "secret", {"weights.bin": b"secret" * 10}), "ns2/secret@1")
    reader = client.create_token("ns1-reader", ["read:ns1"])["token"]
    return {"reader": reader, "client": client}


def _ready_graph(page: Any) -> None:
    page.wait_for_selector("#graph[data-ready='1']", timeout=30_000)


def test_sign_in_find_an_artifact_open_a_version_read_verdicts_and_signer(
    server: LiveServer, data: dict[str, Any], browser: Any, screenshots: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    leaked = only_local(page, server.url)
    page.goto(server.url + "/")
    assert page.url.endswith("/ui")
    assert page.locator("h1").inner_text() == "Sign in"
    page.screenshot(path=str(screenshots / "login.png"), full_page=True)
    sign_in(page, server.url, server.admin_token)
    cookie = next(c for c in context.cookies() if c["name"] == "mir_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
    assert not cookie["secure"]  # plain http on loopback; Secure is set behind HTTPS

    page.fill("#q", "bert")
    page.click("form[role=search] button")
    rows = page.locator("#artifacts tbody tr")
    assert sorted(rows.all_inner_texts())[0].startswith("ns1/bert")
    assert "ns1/corpus" not in page.locator("#artifacts").inner_text()
    page.screenshot(path=str(screenshots / "browse.png"), full_page=True)
    page.click("#artifacts a:text-is('ns1/bert')")
    assert "@prod" in page.locator("h1, #versions").first.inner_text() or page.locator("text=@prod").count()
    page.screenshot(path=str(screenshots / "artifact.png"), full_page=True)
    page.click("#versions a:text-is('1.0')")
    assert page.locator("#scan-status").inner_text() == "clean"
    signers = page.locator("#signatures").inner_text()
    assert "alice" in signers and "pusher signature" in signers and "registry countersignature" in signers
    files = page.locator("#files").inner_text()
    assert "model-00001-of-00002.safetensors" in files and "safetensors" in files.split("model-00001")[1]
    checks = page.locator("#checks li")
    assert checks.count() >= 3
    assert "mir pull ns1/bert@1.0" in page.locator("#cmd-pull").inner_text()
    assert "org/base" in page.locator("#parents").inner_text()
    page.screenshot(path=str(screenshots / "version.png"), full_page=True)
    assert leaked == []
    context.close()


def test_lineage_graph_clicks_through_to_a_parent(
    server: LiveServer, data: dict[str, Any], browser: Any, screenshots: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.url, server.admin_token, "/ui/artifacts/ns1/bert-q4/versions/1/lineage")
    _ready_graph(page)
    assert page.locator("#graph a.node").count() >= 3  # q4, bert, corpus (and the HF source, not a link here)
    assert page.locator("#graph .node.external").count() == 1
    assert "quantized_from" in page.locator("#edge-types").inner_text()
    page.screenshot(path=str(screenshots / "lineage.png"), full_page=True)
    page.click("#graph a.node[data-key='ns1/bert@1.0']")
    page.wait_for_url(re.compile(r".*/ui/artifacts/ns1/bert/versions/1\.0$"))
    assert page.locator("h1").inner_text().startswith("ns1/bert@1.0")
    context.close()


def test_a_read_ns1_token_sees_nothing_of_ns2(server: LiveServer, data: dict[str, Any], browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.url, data["reader"])
    assert "ns1/bert" in page.content()
    assert "ns2" not in page.content()
    page.fill("#q", "secret")
    page.click("form[role=search] button")
    assert "ns2" not in page.content() and "No artifact matches" in page.content()
    response = page.goto(server.url + "/ui/artifacts/ns2/secret/versions/1")
    assert response is not None and response.status == 403
    assert "weights.bin" not in page.content()
    graph = page.goto(server.url + "/ui/artifacts/ns2/secret/versions/1/lineage.json")
    assert graph is not None and graph.status == 403
    page.goto(server.url + "/ui/audit")
    assert "ns2" not in page.content() and "name an artifact" in page.content()
    page.goto(server.url + "/ui/artifacts/ns1/bert/versions/1.0")
    assert page.locator("text=Quarantine…").count() == 0  # no admin action offered to a reader
    refused = page.goto(server.url + "/ui/artifacts/ns1/corpus/versions/1/quarantine")
    assert refused is not None and refused.status == 403
    context.close()


def test_a_hostile_description_runs_nothing(server: LiveServer, data: dict[str, Any], browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, server.url, server.admin_token, "/ui/artifacts/ns1/evil/versions/1")
    response = page.goto(server.url + "/ui/artifacts/ns1/evil/versions/1")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    shown = page.locator(".description").inner_text()
    assert shown == HOSTILE  # shown as text, exactly
    assert page.locator(".description script, .description img, .description a").count() == 0
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert "49" not in shown  # no template evaluation of user text
    assert HOSTILE in page.locator("#parents").inner_text()  # a lineage attribute, as text too
    assert page.locator("#parents script, #parents img").count() == 0
    page.goto(server.url + "/ui/artifacts/ns1/evil/versions/1/lineage")
    _ready_graph(page)
    assert page.locator("#graph .node.external").count() == 1
    assert page.evaluate("window.__pwned") is None and dialogs == []
    context.close()


def test_admin_quarantines_a_dataset_and_sees_its_descendants_affected(
    server: LiveServer, data: dict[str, Any], browser: Any, screenshots: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.url, server.admin_token, "/ui/artifacts/ns1/corpus/versions/1")
    page.click("text=Quarantine…")
    assert "2 descendant versions" in page.locator("main").inner_text()
    page.screenshot(path=str(screenshots / "confirm-quarantine.png"), full_page=True)
    page.fill("#reason", "PII found in train.jsonl")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/artifacts/ns1/corpus/versions/1$"))
    assert "quarantined" in page.locator("#quarantine").inner_text()
    page.goto(server.url + "/ui/artifacts/ns1/corpus/versions/1/lineage")
    _ready_graph(page)
    assert page.locator("#graph .node.quarantined[data-key='ns1/corpus@1']").count() == 1
    assert page.locator("#graph .node.affected[data-key='ns1/bert@1.0']").count() == 1
    assert page.locator("#graph .node.affected[data-key='ns1/bert-q4@1']").count() == 1
    assert "@prod" in page.locator("#impact").inner_text()
    page.screenshot(path=str(screenshots / "lineage-quarantined.png"), full_page=True)
    page.goto(server.url + "/ui/artifacts/ns1/bert-q4/versions/1")
    assert "affected" in page.locator("#quarantine").inner_text()
    page.goto(server.url + "/ui/audit?action=version.quarantined")
    entries = page.locator("#entries").inner_text()
    assert "ns1/corpus@1" in entries and "PII found" in entries and "admin" in entries
    page.goto(server.url + "/ui/audit?artifact=ns1/corpus&actor=admin")
    actions = page.locator("#entries tbody tr td:nth-child(4)").all_inner_texts()
    assert "version.quarantined" in actions and "version.committed" in actions
    assert "signature verified" in page.locator("#tree-head").inner_text()
    page.screenshot(path=str(screenshots / "audit.png"), full_page=True)
    # lift it again, through its own confirmation step
    page.goto(server.url + "/ui/artifacts/ns1/corpus/versions/1")
    page.click("text=Lift quarantine…")
    page.fill("#reason", "false alarm")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/artifacts/ns1/corpus/versions/1$"))
    assert "not quarantined" in page.locator("#quarantine").inner_text()
    context.close()


def test_moving_an_alias_asks_first_and_is_recorded(server: LiveServer, data: dict[str, Any], browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.url, server.admin_token, "/ui/artifacts/ns1/bert-q4/versions/1/alias")
    page.fill("#alias", "staging")
    page.fill("#reason", "try the quantized model")
    page.click("main form button[type=submit]")
    assert "Create @staging" in page.locator("#alias-confirm").inner_text()
    assert "staging" not in data["client"].json("GET", "/v1/artifacts/ns1/bert-q4/aliases")  # not yet
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/artifacts/ns1/bert-q4$"))
    assert "try the quantized model" in page.locator("main").inner_text()
    assert data["client"].json("GET", "/v1/artifacts/ns1/bert-q4/aliases")["staging"] == "1"
    moved = data["client"].json("GET", "/v1/audit/entries", params={"artifact": "ns1/bert-q4"})["items"]
    assert any(e["action"].startswith("alias") and e["actor"] == "admin" for e in moved)
    context.close()


def test_every_page_passes_axe_with_no_serious_violation(
    server: LiveServer, data: dict[str, Any], browser: Any
) -> None:
    context = browser.new_context()
    page = context.new_page()
    leaked = only_local(page, server.url)
    page.goto(server.url + "/ui/login")
    found = {"/ui/login": serious_violations(page)}
    sign_in(page, server.url, server.admin_token)
    for path in ("/ui", "/ui/artifacts/ns1/bert", "/ui/artifacts/ns1/bert/versions/1.0",
                 "/ui/artifacts/ns1/bert/versions/1.0/lineage", "/ui/audit",
                 "/ui/artifacts/ns1/corpus/versions/1/quarantine", "/ui/artifacts/ns1/corpus/versions/1/alias"):
        page.goto(server.url + path)
        if path.endswith("/lineage"):
            _ready_graph(page)
        found[path] = serious_violations(page)
    assert all(v == [] for v in found.values()), json.dumps(found, indent=1)
    assert leaked == []  # no page asks for anything outside the registry
    context.close()


def test_api_docs_work_offline(server: LiveServer, browser: Any, screenshots: Path) -> None:
    page = browser.new_page()
    leaked = only_local(page, server.url)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(server.url + "/docs")
    assert response is not None and "unsafe" not in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "mir" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 20
    page.click(".opblock-summary >> nth=0")  # /v1/health: try it out against the registry itself
    page.click("text=Try it out")
    page.click("text=Execute")
    page.wait_for_selector(".live-responses-table", timeout=30_000)
    page.screenshot(path=str(screenshots / "docs.png"))
    assert leaked == []
    assert not [m for m in console if "Content Security Policy" in m], console
    page.close()


def _session_cookie(server: LiveServer, token: str) -> tuple[httpx.Client, str]:
    """Sign in over plain HTTP, as a browser would: form, login CSRF cookie, session cookie."""
    client = httpx.Client(base_url=server.url)
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    signed = client.post("/ui/login", data={"csrf": csrf.group(1), "token": token, "next": "/ui"})
    assert signed.status_code == 303
    return client, client.cookies["mir_session"]


def test_sessions_store_only_a_hash_refuse_forged_forms_and_end(server: LiveServer, data: dict[str, Any]) -> None:
    client, cookie = _session_cookie(server, server.admin_token)
    engine = create_engine(server.database_url)
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(text("SELECT secret_hash, token_id FROM ui_sessions"))]
    engine.dispose()
    assert hashlib.sha256(cookie.encode()).hexdigest() in {h for h, _ in stored}
    assert not any(cookie in str(row) for row in stored)
    assert cookie not in server.log()

    page = client.get("/ui/artifacts/ns1/corpus/versions/1/quarantine")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf is not None
    url = "/ui/artifacts/ns1/corpus/versions/1/quarantine"
    forged = client.post(url, data={"reason": "forged"})  # no CSRF token: what another site's form would send
    assert forged.status_code == 400
    cross = client.post(url, data={"reason": "forged", "csrf": csrf.group(1)},
                        headers={"Origin": "https://evil.example"})
    assert cross.status_code == 400
    state = data["client"].json("GET", "/v1/artifacts/ns1/corpus/versions/1/quarantine")
    assert state["status"] is None  # nothing happened

    out = client.post("/ui/logout", data={"csrf": csrf.group(1)})
    assert out.status_code == 303
    reused = httpx.get(server.url + "/ui", cookies={"mir_session": cookie})
    assert reused.status_code == 401 and "Sign in" in reused.text
    client.close()


def test_revoking_the_token_ends_its_sessions(server: LiveServer, data: dict[str, Any]) -> None:
    created = data["client"].create_token("short-lived", ["read:ns1"])
    client, _cookie = _session_cookie(server, created["token"])
    assert client.get("/ui").status_code == 200
    data["client"].revoke_token(created["id"], "left the team")
    assert client.get("/ui").status_code == 401
    client.close()


def test_a_foreign_next_url_never_leaves_the_registry(server: LiveServer) -> None:
    client = httpx.Client(base_url=server.url)
    form = client.get("/ui/login", params={"next": "//evil.example/x"})
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None and "evil.example" not in form.text
    signed = client.post("/ui/login", data={"csrf": csrf.group(1), "token": server.admin_token,
                                            "next": "https://evil.example/"})
    assert signed.status_code == 303 and signed.headers["location"] == "/ui"
    client.close()


def test_the_session_cookie_is_secure_behind_https(server: LiveServer) -> None:
    """Behind a TLS-terminating proxy on loopback (uvicorn trusts its X-Forwarded-Proto), the cookie is Secure."""
    https = {"X-Forwarded-Proto": "https"}
    client = httpx.Client(base_url=server.url, headers=https)
    form = client.get("/ui/login")
    assert "secure" in form.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    client.cookies.set("mir_login_csrf", form.cookies["mir_login_csrf"])  # a Secure cookie: not kept over http
    signed = client.post("/ui/login", data={"csrf": csrf.group(1), "token": server.admin_token})
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("mir_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" in cookie and "Max-Age=" in cookie and "Path=/ui" in cookie
    client.close()


def test_search_matches_text_not_patterns(server: LiveServer, data: dict[str, Any], http: httpx.Client) -> None:
    """The search box is a substring of namespace/name; SQL wildcards in it are plain characters."""
    def listed(query: str) -> str:
        page = http.get("/ui", params={"q": query})
        assert page.status_code == 200
        return page.text

    assert "ns1/bert-q4" in listed("BERT-Q")
    for wildcard in ("%", "_", "ns1/b_rt", "\\"):
        assert "No artifact matches" in listed(wildcard)
    assert "ns1/corpus" in listed("ns1/corpus") and "ns1/bert" not in listed("ns1/corpus")
    only_datasets = http.get("/ui", params={"kind": "dataset"}).text
    assert "ns1/corpus" in only_datasets and "ns1/bert-q4" not in only_datasets


def test_read_pages_work_without_javascript(server: LiveServer, data: dict[str, Any], browser: Any) -> None:
    """Progressive enhancement: with script off, sign-in and every read page still answer the questions
    (the lineage page keeps its impact list; only the graph needs script)."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, server.url, server.admin_token, "/ui/artifacts/ns1/bert/versions/1.0")
    assert page.locator("#scan-status").inner_text() == "clean"
    assert "alice" in page.locator("#signatures").inner_text()
    page.goto(server.url + "/ui/artifacts/ns1/corpus/versions/1/lineage")
    assert "ns1/bert-q4@1" in page.locator("#impact").inner_text()
    assert "needs JavaScript" in page.locator("#graph").inner_text()
    context.close()
