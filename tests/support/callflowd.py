"""Starting a real callflowd for the end-to-end scripts (tests/sip/run.py, tests/ui/run.py).

`start` runs `callflowd serve` on a fresh SQLite file in `work`, on a free port, with the
request rate limit off, and waits until it listens and has created its admin account.
"""

import os
import re
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary():
    """The callflowd to test: `CALLFLOWD_BIN`, else the debug build."""
    return os.environ.get("CALLFLOWD_BIN", os.path.join(ROOT, "target/debug/callflowd"))


def start(work, admin_password, extra_args=(), env=None):
    """Starts callflowd; answers `(process, base_url)`, or `(process, None)` when it did not
    come up within 20 s. Its output is in work/callflowd.out and work/callflowd.err."""
    err_path = os.path.join(work, "callflowd.err")
    out_path = os.path.join(work, "callflowd.out")
    p = subprocess.Popen(
        [binary(), "serve", "--listen", "127.0.0.1:0", "--account-bucket-size", "0",
         "--database-url", f"sqlite://{work}/callflowd.db", *extra_args],
        stdout=open(out_path, "w"), stderr=open(err_path, "w"),
        env=dict(os.environ, CALLFLOWD_ADMIN_PASSWORD=admin_password, **(env or {})))
    for _ in range(200):
        with open(err_path, errors="replace") as f:
            m = re.search(r"addr=([0-9.:]+)", f.read())
        if m:
            with open(out_path) as f:
                if "api key" in f.read():
                    return p, "http://" + m.group(1)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    return p, None
