"""The real PyKazoo client (from PyPI) against a running callflowd.

Usage: python pykazoo_check.py BASE_URL ADMIN_PASSWORD API_KEY
Prints one line per check and a closing `pykazoo: N passed, N failed`; exits non-zero on any
failure. Run by .ci/run (tests/clients/run).
"""
import sys
import traceback

from pykazoo.client import PyKazooClient

base, password, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, True, ""))
        except Exception:  # report every failure, keep going
            results.append((name, False, traceback.format_exc()))
        return fn
    return wrap


client = PyKazooClient(base + "/v2")
state = {}


@check("user_auth with account_name")
def _():
    data = client.authentication.user_auth("admin", password, "admin")
    assert client.authentication.authenticated
    state["account"] = data["data"]["account_id"]


@check("api_auth")
def _():
    other = PyKazooClient(base + "/v2")
    data = other.authentication.api_auth(api_key)
    assert data["data"]["account_id"] == state["account"]


@check("create, fetch, list with a filter, update, delete a callflow")
def _():
    account = state["account"]
    created = client.callflows.create_callflow(
        account, {"data": {"name": "PyKazoo", "numbers": ["+14155550101"],
                           "flow": {"module": "user", "data": {"id": "u1"}}}})
    cid = created["data"]["id"]
    fetched = client.callflows.get_callflow(account, cid)
    assert fetched["data"]["numbers"] == ["+14155550101"], fetched
    listed = client.callflows.get_callflows(account, {"filter_name": "PyKazoo"})
    assert [c["id"] for c in listed["data"]] == [cid], listed
    paged = client.callflows.get_callflows(account, {"page_size": 1})
    assert paged["page_size"] == 1, paged
    updated = client.callflows.update_callflow(
        account, cid, {"data": {"name": "PyKazoo 2", "numbers": ["+14155550101"]}})
    assert updated["data"]["name"] == "PyKazoo 2", updated
    deleted = client.callflows.delete_callflow(account, cid)
    assert deleted["data"]["_read_only"]["deleted"] is True, deleted


@check("a validation error surfaces as the client's ValueError")
def _():
    try:
        client.callflows.create_callflow(state["account"], {"data": {"name": "no numbers"}})
    except ValueError as e:
        assert "400" in str(e)
    else:
        raise AssertionError("no error")


@check("search by number through the client's request layer")
def _():
    account = state["account"]
    client.callflows.create_callflow(account, {"data": {"name": "Find me", "numbers": ["+14155550199"]}})
    found = client._rest_request.get("accounts/" + account + "/search",
                                     {"t": "callflow", "q": "number", "v": "1415555019"})
    assert any(r.get("name") == "Find me" for r in found["data"]), found


for name, ok, detail in results:
    print(("ok   " if ok else "FAIL ") + name)
    if detail:
        print(detail)
passed = sum(1 for r in results if r[1])
failed = len(results) - passed
print(f"pykazoo: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
