#!/usr/bin/env python3
"""Real SIP calls through Kamailio routed by callflowd, proven with sipp.

Starts callflowd (SQLite in a temporary directory), Debian's Kamailio with the shipped
deploy/kamailio/kamailio.cfg, and sipp agents on loopback ports standing for devices, a
carrier and a media server. Each scenario places a real call with sipp and checks which agent
received the INVITE (and with what request URI and headers). `--load` adds a load run.

Prints one `sip: ...` line per scenario and `sip e2e: N scenarios passed` last; exits 1 on the
first failure with the logs that explain it. Needs kamailio, sipp and curl-free Python 3.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import support.callflowd as support  # noqa: E402
SECRET = "switch-secret-for-tests"
REALM = "localhost"  # the bootstrap admin account's realm
PASSWORD = "sip-test-admin-password"

WORK = tempfile.mkdtemp(prefix="callflowd-sip-")
PROCS = []
AGENTS = []


_NEXT_PORT = [20000 + (os.getpid() * 7) % 30000]


def free_port():
    """A UDP port on the loopback addresses no one holds, never the same one twice in a run
    (sipp agents also open their media port at the next few numbers, so ports go in steps)."""
    while True:
        port = _NEXT_PORT[0]
        _NEXT_PORT[0] = 20000 + (port - 20000 + 4) % 40000
        try:
            for ip in ("127.0.0.1", "127.0.0.2"):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    try:
                        s.bind((ip, port))
                    finally:
                        s.close()
            return port
        except OSError:
            continue


def log(msg):
    print(msg, flush=True)


def fail(msg):
    log(f"sip: FAILED: {msg}")
    for agent in AGENTS:
        state = "running" if agent.proc.poll() is None else f"exited {agent.proc.returncode}"
        log(f"--- agent {agent.name} on {agent.ip}:{agent.port} ({agent.mode}): {state}")
        for path in (os.path.join(WORK, f"{agent.name}.err"), os.path.join(WORK, f"{agent.name}.out")):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    for line in f.readlines()[-5:]:
                        log("  " + line.rstrip()[:300])
    for name in ("callflowd.err", "kamailio.err"):
        path = os.path.join(WORK, name)
        if os.path.exists(path):
            log(f"--- last lines of {name}")
            with open(path, errors="replace") as f:
                for line in f.readlines()[-60:]:
                    log("  " + line.rstrip())
    cleanup()
    sys.exit(1)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    if os.environ.get("SIP_KEEP_WORK"):
        log(f"sip: work directory kept: {WORK}")
    else:
        shutil.rmtree(WORK, ignore_errors=True)


class Api:
    def __init__(self, base):
        self.base = base
        self.token = None
        self.account = None

    def call(self, method, path, body=None, expect=(200, 201)):
        data = None if body is None else json.dumps({"data": body}).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("x-auth-token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        if status not in expect:
            fail(f"{method} {path} answered {status}: {text[:500]}")
        return json.loads(text) if text else {}

    def login(self):
        creds = hashlib.md5(f"admin:{PASSWORD}".encode()).hexdigest()
        out = self.call("PUT", "/v2/user_auth", {"credentials": creds, "account_name": "admin"})
        self.token = out["auth_token"]
        self.account = out["data"]["account_id"]

    def create(self, kind, doc):
        out = self.call("PUT", f"/v2/accounts/{self.account}/{kind}", doc)
        return out["data"]["id"]

    def update(self, kind, doc_id, doc):
        self.call("POST", f"/v2/accounts/{self.account}/{kind}/{doc_id}", doc)


def start_callflowd(media_port):
    p, base = support.start(WORK, PASSWORD, ["--sip-secret", SECRET, "--sip-media-uri",
                                             f"sip:media@127.0.0.1:{media_port}"],
                            env={"RUST_LOG": "info,sqlx=warn"})
    PROCS.append(p)
    if base is None:
        fail("callflowd did not start")
    return base


def start_kamailio(http_base, sip_port, children):
    cfg = os.path.join(ROOT, "deploy/kamailio/kamailio.cfg")
    err = open(os.path.join(WORK, "kamailio.err"), "w")
    p = subprocess.Popen(
        ["kamailio", "-f", cfg, "-DD", "-E", "-m", "128", "-M", "16",
         "-Y", WORK, "-P", os.path.join(WORK, "kamailio.pid"),
         "-A", f"SIP_LISTEN=udp:127.0.0.1:{sip_port}",
         "-A", f'CALLFLOWD_URL="{http_base}"',
         "-A", f'CALLFLOWD_SECRET="{SECRET}"',
         "-A", f"SIP_CHILDREN={children}"],
        stdout=err, stderr=subprocess.STDOUT)
    PROCS.append(p)
    for _ in range(100):
        if p.poll() is not None:
            break
        # Kamailio answers OPTIONS keepalives once its workers run.
        if options_ok(sip_port):
            return p
        time.sleep(0.1)
    if p.poll() is not None:
        fail("kamailio exited at start")
    if not options_ok(sip_port):
        fail("kamailio does not answer")
    return p


def options_ok(sip_port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    s.bind(("127.0.0.1", 0))
    lp = s.getsockname()[1]
    msg = (f"OPTIONS sip:127.0.0.1:{sip_port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{time.time_ns()}\r\n"
           f"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
           f"Call-ID: probe-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\n"
           "Content-Length: 0\r\n\r\n")
    try:
        s.sendto(msg.encode(), ("127.0.0.1", sip_port))
        data, _ = s.recvfrom(4096)
        return data.startswith(b"SIP/2.0 200")
    except OSError:
        return False
    finally:
        s.close()


# --- sipp scenarios --------------------------------------------------------------------------

REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500"><![CDATA[
REGISTER sip:[field1] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field1]>;tag=[call_number]
To: <sip:[field0]@[field1]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@127.0.0.1:[field2]>
Max-Forwards: 10
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[field1] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field1]>;tag=[call_number]
To: <sip:[field0]@[field1]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[field0]@127.0.0.1:[field2]>
[authentication username=%(user)s password=%(password)s]
Max-Forwards: 10
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="%(final)s"/>
</scenario>
"""

# The audio offer (and answer) every agent sends.
SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""


def reply(status, to_tag=True, contact=False, record_route=False, cseq="[last_CSeq:]",
          sdp=False, retrans=False):
    """A UAS's response to the last request, as a sipp <send>."""
    lines = [f"SIP/2.0 {status}", "[last_Via:]", "[last_From:]",
             "[last_To:]" + (";tag=[pid]SIPpTag01[call_number]" if to_tag else ""),
             "[last_Call-ID:]", cseq]
    if record_route:
        lines.append("[last_Record-Route:]")
    if contact:
        lines.append("Contact: <sip:[local_ip]:[local_port]>")
    if sdp:
        lines += ["Content-Type: application/sdp", "Content-Length: [len]", "", SDP]
    else:
        lines += ["Content-Length: 0", ""]
    attrs = ' retrans="500"' if retrans else ""
    return f"  <send{attrs}><![CDATA[\n" + "\n".join(lines) + "\n]]></send>"


def recv(request):
    return f'  <recv request="{request}"/>'


def scenario(name, *steps):
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            f'<scenario name="{name}">\n' + "\n".join(steps) + "\n</scenario>\n")


RINGING = reply("180 Ringing", contact=True, record_route=True)
ANSWER = reply("200 OK", contact=True, record_route=True, sdp=True, retrans=True)
HANG_UP = [recv("ACK"), recv("BYE"), reply("200 OK", to_tag=False)]

# A UAS: answers (200, after a 180), is busy (486), or rings until cancelled ("ring").
# "answer_now" answers without the 180: under load a 180 and a 200 sent back to back can be
# relayed out of order by two proxy workers, so the load's callee sends one final answer.
UAS = {
    "answer": scenario("answer", recv("INVITE"), RINGING, ANSWER, *HANG_UP),
    "answer_now": scenario("answer_now", recv("INVITE"), ANSWER, *HANG_UP),
    "busy": scenario("busy", recv("INVITE"), reply("486 Busy Here"), recv("ACK")),
    "ring": scenario("ring", recv("INVITE"), reply("180 Ringing", contact=True), recv("CANCEL"),
                     reply("200 OK"),
                     reply("487 Request Terminated", cseq="CSeq: [cseq] INVITE"), recv("ACK")),
}

INVITE_HEAD = """INVITE sip:[field1]@[field2] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field2]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[field1]@[field2]>
Call-ID: [call_id]
CSeq: %(cseq)d INVITE
Contact: <sip:[field0]@[local_ip]:[local_port]>
Max-Forwards: 10
%(auth)sContent-Type: application/sdp
Content-Length: [len]

""" + SDP

ACK_FOR_FINAL = """  <send><![CDATA[
ACK sip:[field1]@[field2] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field2]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: %(cseq)d ACK
Max-Forwards: 10
Content-Length: 0

]]></send>
"""




def uac(expect, authenticate, user="caller", password="pw-caller"):
    """A call: INVITE (with a digest answer to the 407 when `authenticate`), then either the
    final response `expect` (ACKed), or 200 (ACK, a short pause, BYE)."""
    cseq = 1
    parts = ['<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="call">']
    parts.append('  <send retrans="500"><![CDATA[\n' + INVITE_HEAD % {"cseq": cseq, "auth": ""} + "]]></send>")
    if authenticate:
        parts.append('  <recv response="100" optional="true"/>')
        parts.append('  <recv response="407" auth="true"/>')
        parts.append(ACK_FOR_FINAL % {"cseq": cseq})
        cseq = 2
        auth = f"[authentication username={user} password={password}]\n"
        parts.append('  <send retrans="500"><![CDATA[\n' + INVITE_HEAD % {"cseq": cseq, "auth": auth} + "]]></send>")
    parts.append('  <recv response="100" optional="true"/>')
    parts.append('  <recv response="180" optional="true"/>')
    parts.append('  <recv response="183" optional="true"/>')
    if expect == 200:
        parts.append('  <recv response="200" rrs="true"/>')
        parts.append("""  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field2]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: %(cseq)d ACK
Max-Forwards: 10
Content-Length: 0

]]></send>
  <pause milliseconds="100"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@[field2]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: %(next)d BYE
Max-Forwards: 10
Content-Length: 0

]]></send>
  <recv response="200"/>""" % {"cseq": cseq, "next": cseq + 1})
    else:
        parts.append(f'  <recv response="{expect}"/>')
        parts.append(ACK_FOR_FINAL % {"cseq": cseq})
    parts.append("</scenario>\n")
    return "\n".join(parts)


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def csv(name, rows):
    return write(name, "SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows))


class Agent:
    """A sipp UAS on its own port, answering in one way, logging every message it sees."""

    def __init__(self, name, mode, ip="127.0.0.1", trace=True):
        self.name = name
        self.mode = mode
        self.ip = ip
        self.port = free_port()
        self.log = os.path.join(WORK, f"{name}_messages.log")
        scenario = write(f"uas_{name}.xml", UAS[mode])
        self.proc = subprocess.Popen(
            ["sipp", "-sf", scenario, "-i", ip, "-p", str(self.port), "-m", "10000000",
             *(["-trace_msg", "-message_file", self.log] if trace else []), "-nostdin",
             "-mp", str(free_port())],
            stdout=open(os.path.join(WORK, f"{name}.out"), "w"),
            stderr=open(os.path.join(WORK, f"{name}.err"), "w"), cwd=WORK)
        PROCS.append(self.proc)
        AGENTS.append(self)
        self.seen = 0

    def invites(self):
        """INVITE request lines received since the last call, with their headers."""
        if not os.path.exists(self.log):
            return []
        with open(self.log, errors="replace") as f:
            text = f.read()
        new = text[self.seen:]
        self.seen = len(text)
        found = []
        for m in re.finditer(r"message received \[\d+\] bytes :\n\n(INVITE [^\n]*\n(?:[^\n]+\n)*)", new):
            found.append(m.group(1))
        return found

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


def run_sipp(sip_port, scenario_xml, rows, name, extra=()):
    scenario = write(f"{name}.xml", scenario_xml)
    inf = csv(f"{name}.csv", rows)
    r = subprocess.run(
        ["sipp", "127.0.0.1:%d" % sip_port, "-sf", scenario, "-inf", inf, "-i", "127.0.0.1",
         "-p", str(free_port()), "-m", str(len(rows)), "-timeout", "30s", "-timeout_error",
         "-nostdin", "-trace_err", "-error_file", os.path.join(WORK, f"{name}_errors.log"),
         "-mp", str(free_port()), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=WORK, timeout=60)
    return r.returncode


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", action="store_true", help="also run the load test")
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    for tool in ("kamailio", "sipp"):
        if shutil.which(tool) is None:
            fail(f"{tool} is not installed (apt-get install kamailio kamailio-utils-modules kamailio-json-modules sip-tester)")

    media = Agent("media", "answer")
    # The carrier has an address of its own: callflowd knows carriers by source address.
    carrier = Agent("carrier", "answer", ip="127.0.0.2")
    base = start_callflowd(media.port)
    api = Api(base)
    api.login()
    sip_port = free_port()
    start_kamailio(base, sip_port, 4 if args.load else 2)

    # Devices: one agent each (the behaviour is the agent's).
    devices = {}
    for name, mode in [("alice-desk", "answer"), ("alice-mobile", "answer"), ("bob-desk", "busy"),
                       ("carol-1", "ring"), ("carol-2", "answer"), ("dave-desk", "answer")]:
        devices[name] = Agent(name, mode)
    if args.load:
        # The load's callee logs nothing (writing every message would be the bottleneck).
        devices["load-desk"] = Agent("load-desk", "answer_now", trace=False)
    users = {
        "alice": api.create("users", {"first_name": "Alice", "last_name": "Liddell"}),
        "bob": api.create("users", {"first_name": "Bob", "last_name": "Busy"}),
    }
    device_ids = {}
    owners = {"alice-desk": "alice", "alice-mobile": "alice", "bob-desk": "bob"}
    for name in list(devices) + ["caller"]:
        doc = {"name": name, "sip": {"username": name, "password": f"pw-{name}"}}
        if name in owners:
            doc["owner_id"] = users[owners[name]]
        device_ids[name] = api.create("devices", doc)
    api.create("resources", {"name": "Loopback carrier", "rules": [r"^\+1(\d{10})$"],
                             "gateways": [{"server": carrier.ip, "port": carrier.port,
                                           "invite_format": "npan", "prefix": "8"}]})
    always = api.create("temporal_rules", {
        "name": "Always", "cycle": "weekly", "interval": 1, "time_window_start": 0,
        "time_window_stop": 86400, "wdays": ["monday", "tuesday", "wednesday", "thursday",
                                             "friday", "saturday", "sunday"]})
    never = api.create("temporal_rules", {"name": "Never", "cycle": "date",
                                          "start_date": 63113904000})
    vmbox = api.create("vmboxes", {"name": "Bob's box", "mailbox": "3000"})

    def dev(name):
        return {"module": "device", "data": {"id": device_ids[name]}, "children": {}}

    flows = {}
    flows["1001"] = api.create("callflows", {"numbers": ["1001"], "flow": dev("alice-desk")})
    api.create("callflows", {"numbers": ["2000"], "flow": {
        "module": "user", "data": {"id": users["alice"]}, "children": {}}})
    api.create("callflows", {"numbers": ["3000"], "flow": {
        "module": "user", "data": {"id": users["bob"]}, "children": {
            "_": {"module": "voicemail", "data": {"id": vmbox}, "children": {}}}}})
    api.create("callflows", {"numbers": ["4000"], "flow": {
        "module": "ring_group", "data": {"name": "Carols", "strategy": "single", "timeout": 20,
                                         "endpoints": [
                                             {"id": device_ids["carol-1"], "endpoint_type": "device", "timeout": 2},
                                             {"id": device_ids["carol-2"], "endpoint_type": "device", "timeout": 10}]},
        "children": {}}})
    api.create("callflows", {"numbers": ["5000"], "flow": {
        "module": "temporal_route", "data": {"rules": [always]},
        "children": {always: dev("alice-desk"), "_": dev("dave-desk")}}})
    api.create("callflows", {"numbers": ["5001"], "flow": {
        "module": "temporal_route", "data": {"rules": [never]},
        "children": {never: dev("alice-desk"), "_": dev("dave-desk")}}})
    if args.load:
        api.create("callflows", {"numbers": ["7000"], "flow": dev("load-desk")})
    api.create("callflows", {"patterns": [r"^\+?1?([2-9]\d{9})$"], "flow": {
        "module": "resources", "data": {}, "children": {}}})

    # --- registration -----------------------------------------------------------------------
    passed = 0
    for name, a in devices.items():
        scenario = REGISTER % {"final": 200, "user": name, "password": f"pw-{name}"}
        if run_sipp(sip_port, scenario, [[name, REALM, str(a.port), ""]], "register") != 0:
            fail(f"{name} could not register with its password")
    log(f"sip: {len(devices)} devices registered with digest auth (HA1 from callflowd)")
    passed += 1
    scenario = REGISTER % {"final": 403, "user": "alice-desk", "password": "wrong-password"}
    if run_sipp(sip_port, scenario, [["alice-desk", REALM, "5999", ""]], "register_bad") != 0:
        fail("a REGISTER with a wrong password was not refused with 403")
    log("sip: a REGISTER with a wrong password is refused (403)")
    passed += 1

    everyone = list(devices.values()) + [media, carrier]
    for a in everyone:
        a.invites()

    def call(number, expect, label, authenticate=True, user="caller"):
        scenario = uac(expect, authenticate, user, f"pw-{user}")
        code = run_sipp(sip_port, scenario, [[user, number, REALM, f"pw-{user}"]], "call")
        if code != 0:
            errors = os.path.join(WORK, "call_errors.log")
            detail = open(errors, errors="replace").read()[-2000:] if os.path.exists(errors) else ""
            fail(f"{label}: the call to {number} did not end with {expect} (sipp exit {code})\n{detail}")
        time.sleep(0.2)
        return {a.name: a.invites() for a in everyone}

    def only(got, names, label):
        rung = sorted(n for n, inv in got.items() if inv)
        if rung != sorted(names):
            fail(f"{label}: rang {rung}, expected {sorted(names)}")

    got = call("1001", 200, "extension")
    only(got, ["alice-desk"], "extension")
    log("sip: a call to extension 1001 rings alice-desk only, and is answered")
    passed += 1

    got = call("2000", 200, "user")
    only(got, ["alice-desk", "alice-mobile"], "user")
    log("sip: a call to user Alice (2000) rings both of her devices in parallel")
    passed += 1

    got = call("3000", 200, "busy")
    only(got, ["bob-desk", "media"], "busy to voicemail")
    head = got["media"][0]
    for needle in (f"X-Callflowd-Account: {api.account}", "X-Callflowd-Module: voicemail",
                   "X-Callflowd-Node: ", "flow.children._"):
        if needle not in head:
            fail(f"busy to voicemail: the media server's INVITE lacks '{needle}':\n{head}")
    log("sip: Bob answers 486; the call fails over to `_` (voicemail) at the media server, with the callflow headers")
    passed += 1

    started = time.monotonic()
    got = call("4000", 200, "serial ring group")
    took = time.monotonic() - started
    only(got, ["carol-1", "carol-2"], "serial ring group")
    if took < 1.5:
        fail(f"serial ring group: carol-2 answered after {took:.1f}s, before carol-1's 2 s")
    log(f"sip: ring group (single): carol-1 rings for its 2 s, then carol-2 answers ({took:.1f} s)")
    passed += 1

    got = call("4155550123", 200, "carrier")
    only(got, ["carrier"], "carrier")
    if not got["carrier"][0].startswith(f"INVITE sip:84155550123@{carrier.ip}"):
        fail(f"carrier: request URI is not the npan number with the prefix: {got['carrier'][0].splitlines()[0]}")
    log("sip: 4155550123 matches the pattern; the carrier gets INVITE sip:84155550123@ (prefix 8, npan)")
    passed += 1

    got = call("5000", 200, "temporal open")
    only(got, ["alice-desk"], "temporal open")
    got = call("5001", 200, "temporal closed")
    only(got, ["dave-desk"], "temporal closed")
    log("sip: temporal_route takes the rule's branch when it matches, `_` when it does not")
    passed += 1

    got = call("9999", 404, "unknown")
    only(got, [], "unknown")
    log("sip: an unknown number gets 404")
    passed += 1

    got = call("1001", 407, "unauthenticated", authenticate=False)
    only(got, [], "unauthenticated")
    log("sip: an INVITE without credentials gets 407")
    passed += 1

    api.update("callflows", flows["1001"], {"numbers": ["1001"], "flow": dev("dave-desk")})
    got = call("1001", 200, "changed")
    only(got, ["dave-desk"], "changed")
    log("sip: 1001 changed through the API to dave-desk: the next call rings dave-desk")
    passed += 1

    if args.load:
        load(sip_port, base, args.rate, args.seconds)

    log(f"sip e2e: {passed} scenarios passed")
    cleanup()


def load(sip_port, base, rate, seconds):
    """Calls to extension 7000 (a device that answers) at `rate` per second for `seconds`."""
    total = rate * seconds
    scenario = uac(200, True)
    rows = [["caller", "7000", REALM, "pw-caller"]]
    stats = os.path.join(WORK, "load_stats.csv")
    started = time.monotonic()
    scenario_path = write("load.xml", scenario)
    inf = csv("load.csv", rows)
    r = subprocess.run(
        ["sipp", "127.0.0.1:%d" % sip_port, "-sf", scenario_path, "-inf", inf, "-i", "127.0.0.1",
         "-p", str(free_port()), "-r", str(rate), "-m", str(total), "-l", str(rate * 5),
         "-timeout", str(seconds + 60) + "s", "-nostdin", "-trace_stat", "-stf", stats,
         "-fd", "1", "-mp", str(free_port()), "-trace_err", "-error_file",
         os.path.join(WORK, "load_errors.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=WORK, timeout=seconds + 120)
    took = time.monotonic() - started
    with open(stats) as f:
        lines = f.read().strip().splitlines()
    head = lines[0].split(";")
    last = dict(zip(head, lines[-1].split(";")))
    ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    p99 = histogram_quantile(metrics, "callflowd_sip_route_duration_seconds", 0.99)
    p50 = histogram_quantile(metrics, "callflowd_sip_route_duration_seconds", 0.50)
    decisions = sum(int(float(m.group(1))) for m in re.finditer(
        r'callflowd_sip_route_decisions_total\{[^}]*\} (\S+)', metrics))
    if failed:
        reasons = {}
        path = os.path.join(WORK, "load_errors.log")
        if os.path.exists(path):
            for m in re.finditer(r"(Aborting call[^']*'[^\n]*|[A-Z][a-z]+ call[^\n]*timeout[^\n]*)", open(path, errors="replace").read()):
                key = re.sub(r"Call-Id '[^']*'", "Call-Id", m.group(1))[:160]
                reasons[key] = reasons.get(key, 0) + 1
        for key, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
            log(f"sip load: {n} x {key}")
    log(f"sip load: {ok} calls answered, {failed} failed, {ok / took:.0f} calls/s over {took:.1f} s "
        f"(asked {rate}/s for {seconds} s); {decisions} routing decisions, p50 <= {p50 * 1000:.2f} ms, "
        f"p99 <= {p99 * 1000:.2f} ms (histogram bucket bounds); sipp exit {r.returncode}")


def histogram_quantile(metrics, name, q):
    buckets = []
    for line in metrics.splitlines():
        m = re.match(rf'{name}_bucket{{le="([^"]+)"}} (\d+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, int(m.group(2))))
    if not buckets:
        return float("nan")
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # report and clean up on anything unexpected
        fail(f"{type(e).__name__}: {e}")
