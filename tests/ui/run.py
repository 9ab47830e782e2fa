#!/usr/bin/env python3
"""The browser editor end to end, in Debian's Chromium driven by Playwright (PyPI).

Starts callflowd on a temporary SQLite store, opens http://HOST/ui/ in headless Chromium
(/usr/bin/chromium: Playwright's own browser download cannot work here) and goes through:
logging in; building a menu with two branches from the palette and forms only; a validation
error shown on its node; publishing with the diff; finding the callflow by number; simulating
"press 1"; rolling back; and checking that a second account cannot see it. It also checks that
the page asks no other host for anything, that the CSP header is there, that the console stays
clean, and runs axe-core (axe-playwright-python) for serious accessibility violations.
Screenshots go to docs/ui/. Prints `ui e2e: N scenarios passed` last.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import support.callflowd as support  # noqa: E402
SHOTS = os.path.join(ROOT, "docs", "ui")
PASSWORD = "ui-test-admin-password"
WORK = tempfile.mkdtemp(prefix="callflowd-ui-")
PROCS = []


def log(msg):
    print(msg, flush=True)


def fail(msg):
    log(f"ui: FAILED: {msg}")
    path = os.path.join(WORK, "callflowd.err")
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f.readlines()[-30:]:
                log("  " + line.rstrip()[:300])
    cleanup()
    sys.exit(1)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(WORK, ignore_errors=True)


def start():
    p, base = support.start(WORK, PASSWORD)
    PROCS.append(p)
    if base is None:
        fail("callflowd did not start")
    return base, support.binary()


def call(base, method, path, token=None, data=None):
    body = None if data is None else json.dumps({"data": data}).encode()
    req = urllib.request.Request(base + path, data=body, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("x-auth-token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    base, binary = start()
    creds = hashlib.md5(f"admin:{PASSWORD}".encode()).hexdigest()
    status, login = call(base, "PUT", "/v2/user_auth", data={"credentials": creds, "account_name": "admin"})
    if status != 201:
        fail(f"login over the API: {status} {login}")
    token, account = login["auth_token"], login["data"]["account_id"]
    # The documents the pickers offer (made over the API: the editor edits callflows).
    ids = {}
    for kind, doc in [("menus", {"name": "Main menu"}), ("users", {"first_name": "Sales", "last_name": "Team"}),
                      ("users", {"first_name": "Support", "last_name": "Desk"})]:
        status, out = call(base, "PUT", f"/v2/accounts/{account}/{kind}", token, doc)
        if status != 201:
            fail(f"creating {kind}: {status} {out}")
        ids[doc.get("name") or doc["first_name"]] = out["data"]["id"]
        if kind == "users":
            call(base, "PUT", f"/v2/accounts/{account}/devices", token,
                 {"name": f"{doc['first_name']} phone", "owner_id": out["data"]["id"]})
    # A second account with its own admin, made with the command line while the server runs.
    other = subprocess.run(
        [binary, "create-account", "--name", "Other", "--realm", "other.example", "--username", "olga",
         "--password", "olga-password-1", "--database-url", f"sqlite://{WORK}/callflowd.db"],
        capture_output=True, text=True)
    if other.returncode != 0:
        fail(f"create-account: {other.stderr}")

    def listed():
        """The names of the callflows the API lists for the admin account."""
        _, out = call(base, "GET", f"/v2/accounts/{account}/callflows?paginate=false", token)
        return [c.get("name") for c in out["data"]]

    os.makedirs(SHOTS, exist_ok=True)
    passed = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                     args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        page = context.new_page()
        foreign, problems, refused = [], [], []
        host = base.split("//", 1)[1]
        page.on("request", lambda r: None if r.url.split("//", 1)[-1].startswith(host) or r.url.startswith("data:") else foreign.append(r.url))
        # The browser logs every 4xx answer as a console error. The expected ones are the lookup's
        # 404 for a number nothing answers and the draft save the validation step makes fail;
        # any other console error fails the test.
        def expected_refusal(url, status):
            return ((status == 404 and "/lookup?number=" in url) or (status == 400 and "/draft" in url)
                    or (status == 400 and url.endswith("/lint")))

        page.on("response", lambda r: refused.append((r.url, r.status)) if r.status >= 400 else None)
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text} ({m.location.get('url')})")
                if m.type == "error" and not (m.text.startswith("Failed to load resource")
                                              and any(expected_refusal(u, st) for u, st in refused if u == m.location.get("url")))
                else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        response = page.goto(base + "/ui/")
        csp = response.headers.get("content-security-policy", "")
        if "script-src 'self'" not in csp or "unsafe-inline" in csp or "unsafe-eval" in csp:
            fail(f"the CSP header is missing or too loose: {csp!r}")
        log("ui: /ui/ is served with a strict Content-Security-Policy")
        passed += 1

        # 1. Log in.
        page.fill("#login-user", "admin")
        page.fill("#login-password", PASSWORD)
        page.fill("#login-account", "admin")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#workspace")).to_be_visible()
        log("ui: logged in with user name, password and account name")
        passed += 1

        # 2. A menu with two branches, through the palette and forms only.
        page.click("#new-callflow")
        page.fill("#cf-name", "Front desk")
        page.fill("#cf-numbers", "7100")
        page.click("#panel button[data-module=menu]")
        page.select_option("#f-id", label="Main menu")
        for key, who in [("1", "Sales Team"), ("2", "Support Desk")]:
            page.click("#canvas [data-path='flow']")
            page.click("#panel >> text=Open the palette")
            page.fill("#branch-key", key)
            page.click("#panel button[data-module=user]")
            page.select_option("#f-id", label=who)
        expect(page.locator("#canvas .node")).to_have_count(3)
        expect(page.locator("#canvas .edge-label", has_text="press 1")).to_be_visible()
        expect(page.locator("#canvas .node .ref", has_text="Main menu")).to_be_visible()
        page.screenshot(path=os.path.join(SHOTS, "tree.png"))
        log("ui: a menu with two user branches built from the palette and schema forms")
        passed += 1

        # 3. A validation error shown on its node: a language node with a bad language tag.
        page.click("#canvas [data-path='flow']")
        page.click("#panel >> text=Open the palette")
        page.fill("#branch-key", "0")
        page.fill("#palette-search", "lang")
        page.click("#panel button[data-module=language]")
        page.fill("#f-language", "english")
        page.press("#f-language", "Tab")
        page.click("#save-draft")
        bad = page.locator("#canvas .node.has-error[data-module=language]")
        expect(bad).to_be_visible()
        expect(bad.locator(".node-error")).to_contain_text("pattern")
        page.screenshot(path=os.path.join(SHOTS, "validation.png"))
        bad.click()
        page.click("#delete-node")
        page.click("#save-draft")
        expect(page.locator("#status")).to_contain_text("Draft saved")
        # The lint's findings on the draft are pinned on their nodes too (a menu without `_`).
        expect(page.locator("#canvas .node.has-finding[data-path='flow'] .node-finding")).to_contain_text("menu_no_fallback")
        log("ui: the server's validation error is pinned on the language node; deleting it saves the draft; lint findings sit on their nodes")
        passed += 1

        # 4. Publish, with the diff.
        page.click("#publish")
        expect(page.locator("#publish-diff")).to_contain_text('"7100"')
        page.click("#confirm-publish")
        expect(page.locator("#status")).to_contain_text("Published")
        log("ui: published after the diff against the live revision (a new callflow: all added)")
        passed += 1

        # 4b. Patterns are checked live by the server (nothing saved).
        page.fill("#cf-patterns", "*55(\\d+)")
        expect(page.locator("#meta-checks")).to_contain_text("nothing to repeat")
        page.fill("#cf-patterns", "")
        log("ui: a pattern typed in is checked live: *55(\\d+) does not compile in Kazoo's dialect")
        passed += 1

        # 5. Find it by number (list filter and the lookup).
        page.fill("#search", "7100")
        expect(page.locator("#callflow-list li")).to_have_count(1)
        expect(page.locator("#lookup-result")).to_contain_text("Front desk")
        page.fill("#search", "Support")
        expect(page.locator("#callflow-list li", has_text="Front desk")).to_have_count(1)
        page.fill("#search", "")
        log("ui: found by number (with the lookup's answer) and by the name of a document it rings")
        passed += 1

        # 6. Simulate pressing 1.
        page.click("#show-sim")
        page.click("[data-digit='1']")
        page.click("#ev-answer")
        page.click("#run-sim")
        expect(page.locator("#sim-outcome")).to_contain_text("connected")
        expect(page.locator("#canvas .node.visited")).to_have_count(2)
        expect(page.locator("#canvas .node.visited[data-path='flow.children.1']")).to_be_visible()
        # Step by step: the first step is the menu alone, the next adds Sales.
        page.click("#step-first")
        expect(page.locator("#canvas .node.visited")).to_have_count(1)
        expect(page.locator("#canvas .node.current-step[data-path='flow']")).to_be_visible()
        page.click("#step-next")
        expect(page.locator("#canvas .node.current-step[data-path='flow.children.1']")).to_be_visible()
        expect(page.locator("#canvas .node.visited")).to_have_count(2)
        page.screenshot(path=os.path.join(SHOTS, "simulation.png"))
        page.click("#save-test")
        expect(page.locator("#status")).to_contain_text("Saved the call test")
        log("ui: pressing 1 highlights menu -> Sales on the tree (whole path, then step by step), connected; saved as a call test")
        passed += 1

        # 7. A second revision (renamed, and a third branch), then roll back to the first.
        page.fill("#cf-name", "Front desk (night)")
        page.click("#canvas [data-path='flow']")
        page.click("#panel >> text=Open the palette")
        page.fill("#branch-key", "0")
        page.click("#panel button[data-module=voicemail]")
        page.click("#publish")
        page.click("#confirm-publish")
        expect(page.locator("#status")).to_contain_text("Published")
        page.click("#show-history")
        expect(page.locator("#revisions li")).to_have_count(2)
        page.click("[data-compare='1']")
        expect(page.locator("#compare-dialog")).to_be_visible()
        expect(page.locator("#compare-dialog .node.changed")).to_have_count(1)  # the new branch, drawn on the right
        expect(page.locator("#compare-meta")).to_contain_text("Front desk (night)")
        page.screenshot(path=os.path.join(SHOTS, "diff.png"))
        page.click("#compare-dialog >> text=Close")
        # Any two revisions: 1 against 2 from the selects draws the same difference.
        page.select_option("#compare-a", "1")
        page.select_option("#compare-b", "2")
        page.click("#compare-form button[type=submit]")
        expect(page.locator("#compare-dialog h2")).to_contain_text("Revision 1 (left) and revision 2 (right)")
        expect(page.locator("#compare-dialog .node.changed")).to_have_count(1)
        page.click("#compare-dialog >> text=Close")
        page.click("[data-rollback='1']")
        expect(page.locator("#status")).to_contain_text("Rolled back to revision 1")
        expect(page.locator("#cf-name")).to_have_value("Front desk")
        if listed() != ["Front desk"]:
            fail(f"after the rollback the API lists {listed()}")
        log("ui: history shows two revisions, compared on the tree; rolled back to revision 1")
        passed += 1

        # 7b. Delete it, then restore it from the deleted list.
        page.click("#delete-callflow")
        page.click("#delete-callflow")
        expect(page.locator("#deleted-list li", has_text="Front desk")).to_have_count(1)
        if listed():
            fail(f"the callflow is still listed after the delete: {listed()}")
        page.click("#deleted-list [data-restore]")
        expect(page.locator("#status")).to_contain_text("Restored")
        expect(page.locator("#cf-name")).to_have_value("Front desk")
        if listed() != ["Front desk"]:
            fail(f"after the restore the API lists {listed()}")
        log("ui: deleted with two clicks, then restored from the deleted list")
        passed += 1

        # 8. Accessibility (axe-core) on the editor with the history open.
        from axe_playwright_python.sync_playwright import Axe
        results = Axe().run(page)
        serious = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
        if serious:
            fail("axe: " + "; ".join(f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])}" for v in serious))
        log(f"ui: axe-core finds no serious or critical violations ({len(results.response['violations'])} minor)")
        passed += 1

        # 9. A second account cannot see it.
        other_page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        other_page.goto(base + "/ui/")
        other_page.fill("#login-user", "olga")
        other_page.fill("#login-password", "olga-password-1")
        other_page.fill("#login-account", "Other")
        other_page.click("#login-form button[type=submit]")
        expect(other_page.locator("#workspace")).to_be_visible()
        expect(other_page.locator("#callflow-list li")).to_have_count(0)
        other_page.fill("#search", "7100")
        expect(other_page.locator("#lookup-result")).to_contain_text("no callflow answers it")
        log("ui: the second account sees no callflow, and 7100 reaches nothing there")
        passed += 1

        if foreign:
            fail(f"the page asked other hosts: {foreign[:5]}")
        if problems:
            fail("; ".join(problems[:5]))
        log("ui: no request left for another host; no console errors")
        passed += 1
        browser.close()
    log(f"ui e2e: {passed} scenarios passed")
    cleanup()


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:
        fail(f"{type(e).__name__}: {str(e)[:2000]}")
