#!/usr/bin/env python3
"""Conformance suite for Python `etcd3gw` (etcd's HTTP/JSON gateway), run by tests/conformance/run.

    suite.py --list                 # scenario names, one a line, in run order
    suite.py HOST:PORT SCENARIO     # prints the scenario's transcript on stdout

etcd3gw is what OpenStack's tooz uses; it speaks only the gateway (`/v3/...` JSON). The
transcript records what the client returns (values, revisions, lease TTLs, watch events)
and the raw JSON of a few gateway answers, compact and in the server's own field order, so
etcd's and oxcd's JSON are compared byte for byte after `run`'s normalization. Lease ids
and raft terms are replaced here (<LEASE_n>, <TERM>). Keys: `gw/<scenario>/`.
"""
import json
import re
import sys
import threading
import time

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.utils import _decode, _encode, _increment_last_byte

SCENARIOS = []
LEASES = {}


def scenario(f):
    SCENARIOS.append(f.__name__)
    return f


def out(*parts):
    print(" ".join(str(p) for p in parts), flush=True)


def lease_name(lease_id):
    return LEASES.setdefault(int(lease_id), "<LEASE_%d>" % (len(LEASES) + 1))


def masked(text):
    text = re.sub(r'"raft_term":"[0-9]+"', '"raft_term":"<TERM>"', text)
    for lid, name in LEASES.items():
        text = text.replace('"%d"' % lid, '"%s"' % name)
        text = text.replace("%x" % lid, name)
    return text


def raw(client, path, body, hide_key=False):
    """POSTs `body` to the gateway and records status and the raw answer; `hide_key`
    records a returned `key` (which holds a lease id) decoded and masked."""
    resp = requests.post(client.get_url(path), data=json.dumps(body), timeout=10)
    text = resp.text.strip()
    if hide_key:
        key = resp.json()["key"]
        text = text.replace(key, masked(_decode(key)))
    out("POST", path, resp.status_code, masked(text))
    return resp


@scenario
def kv(c):
    p = "gw/kv/"
    out("put", c.put(p + "a", "1"))
    out("put", c.put(p + "b", "2"))
    out("get", c.get(p + "a"))
    out("get missing", c.get(p + "zz"))
    out("get_prefix", [(v, m["key"], m["mod_revision"]) for v, m in c.get_prefix(p)])
    out("create existing", c.create(p + "a", "x"))
    out("create new", c.create(p + "c", "3"))
    out("replace ok", c.replace(p + "a", "1", "10"))
    out("replace stale", c.replace(p + "a", "1", "11"))
    raw(c, "kv/range", {"key": _encode(p), "range_end": _encode(_increment_last_byte(p)),
                        "sort_order": "DESCEND", "limit": 2})
    raw(c, "kv/range", {"key": _encode(p), "rangeEnd": _encode(_increment_last_byte(p)),
                        "countOnly": True})
    out("delete", c.delete(p + "b"))
    out("delete missing", c.delete(p + "b"))
    out("delete_prefix", c.delete_prefix(p))


@scenario
def errors(c):
    raw(c, "kv/put", {"key": ""})
    raw(c, "kv/range", {"key": "@@"})
    raw(c, "kv/range", {"key": _encode("a"), "revision": 100000})
    raw(c, "lease/revoke", {"ID": 4242})
    raw(c, "election/leader", {"name": _encode("gw/errors/none")})
    r = requests.get(c.get_url("kv/range"), timeout=10)
    out("GET kv/range", r.status_code, r.text.strip())


@scenario
def txn(c):
    p = "gw/txn/"
    c.put(p + "k", "v")
    r = c.transaction({
        "compare": [{"key": _encode(p + "k"), "result": "EQUAL", "target": "VALUE",
                     "value": _encode("v")}],
        "success": [{"request_put": {"key": _encode(p + "k"), "value": _encode("w")}},
                    {"request_range": {"key": _encode(p + "k")}}],
        "failure": [],
    })
    out("txn", masked(json.dumps(r, separators=(",", ":"))))
    raw(c, "kv/txn", {"compare": [{"key": _encode(p + "k"), "target": "CREATE",
                                   "result": "LESS", "create_revision": 1}],
                      "failure": [{"request_delete_range": {"key": _encode(p + "k"),
                                                            "prev_kv": True}}]})


@scenario
def lease(c):
    p = "gw/lease/"
    ls = c.lease(30)
    lease_name(ls.id)
    out("ttl", ls.ttl() in (29, 30))
    out("refresh", ls.refresh())
    c.put(p + "k", "v", lease=ls)
    out("keys", ls.keys())
    raw(c, "kv/lease/timetolive", {"ID": ls.id, "keys": True})
    raw(c, "lease/keepalive", {"ID": ls.id})
    out("revoke", ls.revoke())
    out("ttl after revoke", ls.ttl())
    raw(c, "lease/timetolive", {"ID": ls.id})
    out("get", c.get(p + "k"))


@scenario
def watch(c):
    p = "gw/watch/"
    events, cancel = c.watch_prefix(p)
    got = []
    done = threading.Event()

    def collect():
        for ev in events:
            got.append(ev)
            if len(got) == 3:
                done.set()
                return

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    time.sleep(0.5)
    c.put(p + "a", "1")
    c.put(p + "b", "2")
    c.delete(p + "a")
    out("three events", done.wait(10))
    cancel()
    for ev in got:
        kv = ev["kv"]
        out("event", ev.get("type", "PUT"), kv["key"], kv.get("value"), kv["mod_revision"])


@scenario
def lock(c):
    lk = c.lock("gw-lock", ttl=30)
    out("acquire", lk.acquire())
    lease_name(lk.lease.id)
    out("is_acquired", lk.is_acquired())
    out("release", lk.release())
    out("is_acquired after release", lk.is_acquired())


@scenario
def lock_service(c):
    ls = c.lease(30)
    lease_name(ls.id)
    r = raw(c, "lock/lock", {"name": _encode("gw/locksvc"), "lease": ls.id}, hide_key=True)
    key = r.json().get("key")
    raw(c, "lock/unlock", {"key": key})
    ls.revoke()


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(SCENARIOS))
        return
    host, port = sys.argv[1].rsplit(":", 1)
    name = sys.argv[2]
    client = Etcd3Client(host=host, port=int(port), timeout=10)
    globals()[name](client)


if __name__ == "__main__":
    main()
