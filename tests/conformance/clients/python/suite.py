#!/usr/bin/env python3
"""Conformance suite for the Python `etcd3` client (gRPC), run by tests/conformance/run.

    suite.py --list                 # scenario names, one a line, in run order
    suite.py HOST:PORT SCENARIO     # prints the scenario's transcript on stdout

The transcript is one line per observable result (keys, values, revisions, counts,
`more`, `succeeded`, response headers, errors with gRPC code and message); `run`
diffs etcd's transcript against oxcd's after its usual normalization of ids/terms.
When the server answers UNIMPLEMENTED the scenario stops with a final line
`UNIMPLEMENTED <what>`, which `run` records as "not yet supported".
Each scenario uses its own key prefix `py/<scenario>/`.
"""
import sys

import grpc
import etcd3

SCENARIOS = []


def scenario(f):
    SCENARIOS.append(f.__name__)
    return f


class Unimplemented(Exception):
    pass


def out(*parts):
    print(" ".join(str(p) for p in parts), flush=True)


def s(b):
    if isinstance(b, bytes):
        return repr(b.decode("utf-8", "backslashreplace"))
    return repr(b)


def hdr(h):
    # JSON-like so that run's normalize() rewrites ids and raft_term.
    return '{"cluster_id":%d,"member_id":%d,"revision":%d,"raft_term":%d}' % (
        h.cluster_id, h.member_id, h.revision, h.raft_term)


def kv(k):
    return "kv key=%s value=%s create=%d mod=%d version=%d lease=%d" % (
        s(k.key), s(k.value), k.create_revision, k.mod_revision, k.version, k.lease)


def err(label, e):
    """Record an exception; raise Unimplemented if the server said so."""
    if isinstance(e, grpc.RpcError):
        code = e.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            out("UNIMPLEMENTED", label, "(%s)" % e.details())
            raise Unimplemented()
        out(label, "error", type(e).__name__, "code=%s" % code.name, "details=%s" % s(e.details()))
    else:
        out(label, "error", type(e).__name__, s(str(e)))


def call(label, fn, show):
    try:
        r = fn()
    except Unimplemented:
        raise
    except Exception as e:  # noqa: BLE001 - every error is part of the transcript
        err(label, e)
        return None
    show(r)
    return r


def show_range(label):
    def f(r):
        out(label, "header", hdr(r.header), "count=%d" % r.count, "more=%s" % r.more, "n=%d" % len(r.kvs))
        for k in r.kvs:
            out("  ", kv(k))
    return f


def show_put(label):
    def f(r):
        out(label, "header", hdr(r.header), "has_prev_kv=%s" % r.HasField("prev_kv"))
        if r.HasField("prev_kv"):
            out("  prev", kv(r.prev_kv))
    return f


def show_del(label):
    def f(r):
        out(label, "header", hdr(r.header), "deleted=%d" % r.deleted, "prev_kvs=%d" % len(r.prev_kvs))
        for k in r.prev_kvs:
            out("  prev", kv(k))
    return f


def show_txn(label, c):
    def f(r):
        ok, responses = r
        out(label, "succeeded=%s" % ok, "responses=%d" % len(responses))
        for x in responses:
            if isinstance(x, list):  # a range: [(value, KVMetadata)]
                out("  range n=%d" % len(x))
                for value, meta in x:
                    out("    kv key=%s value=%s create=%d mod=%d version=%d" % (
                        s(meta.key), s(value), meta.create_revision, meta.mod_revision, meta.version))
                    out("    header", hdr(meta.response_header))
            else:
                which = x.WhichOneof("response")
                inner = getattr(x, which)
                if which == "response_put":
                    out("  put header", hdr(inner.header))
                elif which == "response_delete_range":
                    out("  delete header", hdr(inner.header), "deleted=%d" % inner.deleted)
                else:
                    out("  txn header", hdr(inner.header), "succeeded=%s" % inner.succeeded,
                        "responses=%d" % len(inner.responses))
                    for y in inner.responses:
                        w = y.WhichOneof("response")
                        out("    ", w, "header", hdr(getattr(y, w).header))
                        if w == "response_range":
                            for k in y.response_range.kvs:
                                out("      ", kv(k))
    return f


def rng(c, key, range_end=None, **fields):
    """A Range through the client's own stub: etcd3 0.12's get_*() silently drop
    limit, revision, count_only and min/max revisions, so those go here."""
    from etcd3 import etcdrpc
    from etcd3.utils import to_bytes
    req = etcdrpc.RangeRequest(key=to_bytes(key), **fields)
    if range_end is not None:
        req.range_end = to_bytes(range_end)
    return c.kvstub.Range(req, c.timeout)


def prefix_end(p):
    return p[:-1] + chr(ord(p[-1]) + 1)


# ---------------------------------------------------------------- scenarios
@scenario
def kv_put_get(c, p):
    call("put a", lambda: c.put(p + "a", "1"), show_put("put a"))
    call("put a again prev_kv", lambda: c.put(p + "a", "2", prev_kv=True), show_put("put a again prev_kv"))
    call("put b prev_kv (new)", lambda: c.put(p + "b", "bee", prev_kv=True), show_put("put b prev_kv (new)"))
    call("put_if_not_exists a", lambda: c.put_if_not_exists(p + "a", "x"), lambda r: out("put_if_not_exists a", r))
    call("put_if_not_exists c", lambda: c.put_if_not_exists(p + "c", "sea"), lambda r: out("put_if_not_exists c", r))
    call("replace c", lambda: c.replace(p + "c", "sea", "see"), lambda r: out("replace c", r))
    call("replace c stale", lambda: c.replace(p + "c", "sea", "zzz"), lambda r: out("replace c stale", r))

    def show_get(label):
        def f(r):
            value, meta = r
            if meta is None:
                out(label, "value=None")
            else:
                out(label, "value=%s" % s(value), "key=%s" % s(meta.key), "create=%d mod=%d version=%d lease=%d"
                    % (meta.create_revision, meta.mod_revision, meta.version, meta.lease_id),
                    "header", hdr(meta.response_header))
        return f
    call("get a", lambda: c.get(p + "a"), show_get("get a"))
    call("get missing", lambda: c.get(p + "missing"), show_get("get missing"))
    call("get_response a", lambda: c.get_response(p + "a"), show_range("get_response a"))
    call("get_response serializable", lambda: c.get_response(p + "a", serializable=True),
         show_range("get_response serializable"))
    call("get_prefix", lambda: list(c.get_prefix(p)),
         lambda r: [out("get_prefix", s(v), s(m.key), m.mod_revision) for v, m in r] or out("get_prefix empty"))
    call("get_prefix none", lambda: list(c.get_prefix(p + "zz")), lambda r: out("get_prefix none n=%d" % len(r)))
    call("get_range a..c", lambda: c.get_range_response(p + "a", p + "c"), show_range("get_range a..c"))
    call("get_range a..a", lambda: c.get_range_response(p + "a", p + "a"), show_range("get_range a..a"))


@scenario
def kv_range_options(c, p):
    # Data without ties: KEY a b c d; CREATE c a d b; MODIFY a c d b; VERSION a1 c2 b3 d4; VALUE b d c a
    for k, v in [("c", "mu"), ("a", "zeta"), ("d", "delta"), ("b", "alpha"), ("d", "delta2"), ("b", "alpha2"),
                 ("d", "delta3"), ("c", "mu2"), ("d", "delta4"), ("b", "alpha3")]:
        c.put(p + k, v)
    for target in ["key", "create", "mod", "version", "value"]:
        for order in ["ascend", "descend"]:
            label = "sort %s %s" % (target, order)
            call(label, lambda: c.get_prefix_response(p, sort_target=target, sort_order=order), show_range(label))
    call("keys_only", lambda: c.get_prefix_response(p, keys_only=True), show_range("keys_only"))
    e = prefix_end(p)
    for limit in [0, 1, 3, 4, 5]:
        label = "raw limit %d" % limit
        call(label, lambda: rng(c, p, e, limit=limit), show_range(label))
    call("raw limit 2 sort mod descend", lambda: rng(c, p, e, limit=2, sort_target="MOD", sort_order="DESCEND"),
         show_range("raw limit 2 sort mod descend"))
    call("raw count_only", lambda: rng(c, p, e, count_only=True), show_range("raw count_only"))
    call("raw count_only limit 1", lambda: rng(c, p, e, count_only=True, limit=1), show_range("raw count_only limit 1"))
    call("raw count_only none", lambda: rng(c, p + "none", prefix_end(p + "none"), count_only=True),
         show_range("raw count_only none"))
    cmod = c.get_response(p + "c").kvs[0].mod_revision
    call("raw min_mod_revision", lambda: rng(c, p, e, min_mod_revision=cmod), show_range("raw min_mod_revision"))
    call("raw max_create_revision", lambda: rng(c, p, e, max_create_revision=cmod - 6),
         show_range("raw max_create_revision"))
    call("get_all_response sorted b..c", lambda: c.get_range_response(p + "b", p + "d", sort_order="descend"),
         show_range("get_all_response sorted b..c"))


@scenario
def kv_revisions(c, p):
    base = c.get_response(p + "probe").header.revision
    out("base revision", base)
    c.put(p + "k", "v1")
    c.put(p + "k", "v2")
    c.put(p + "k", "v3")
    c.delete(p + "k")
    c.put(p + "k", "v4")
    for d in range(0, 6):
        label = "rev base+%d" % d
        call(label, lambda: rng(c, p + "k", revision=base + d), show_range(label))
    call("prefix rev base+2", lambda: rng(c, p, prefix_end(p), revision=base + 2), show_range("prefix rev base+2"))


@scenario
def kv_delete(c, p):
    for k in "abcde":
        c.put(p + k, k * 2)
    c.put(p[:-1] + "x", "outside")
    call("delete a", lambda: c.delete(p + "a"), lambda r: out("delete a", r))
    call("delete a again", lambda: c.delete(p + "a"), lambda r: out("delete a again", r))
    call("delete b prev_kv", lambda: c.delete(p + "b", prev_kv=True, return_response=True), show_del("delete b prev_kv"))
    call("delete missing prev_kv", lambda: c.delete(p + "zz", prev_kv=True, return_response=True),
         show_del("delete missing prev_kv"))
    call("delete_prefix", lambda: c.delete_prefix(p), show_del("delete_prefix"))
    call("get prefix after", lambda: c.get_prefix_response(p), show_range("get prefix after"))
    call("outside survives", lambda: c.get_response(p[:-1] + "x"), show_range("outside survives"))


@scenario
def txn(c, p):
    t = c.transactions
    c.put(p + "k", "v")
    call("txn all compares true", lambda: c.transaction(
        compare=[t.value(p + "k") == "v", t.version(p + "k") == 1, t.create(p + "none") == 0,
                 t.mod(p + "k") > 0, t.value(p + "k") != "w", t.version(p + "k") < 5],
        success=[t.put(p + "ok", "yes"), t.get(p + "k"), t.delete(p + "nothing")],
        failure=[t.put(p + "fail", "no")]), show_txn("txn all compares true", c))
    call("txn value mismatch", lambda: c.transaction(
        compare=[t.value(p + "k") == "other"],
        success=[t.put(p + "ok2", "yes")],
        failure=[t.put(p + "fail", "no"), t.get(p + "k"), t.get(p, p + "\xff")]), show_txn("txn value mismatch", c))
    call("txn create mismatch", lambda: c.transaction(
        compare=[t.create(p + "k") == 0], success=[t.put(p + "x", "1")], failure=[]),
        show_txn("txn create mismatch", c))
    call("txn mod greater", lambda: c.transaction(
        compare=[t.mod(p + "k") > 1000000], success=[], failure=[t.delete(p + "fail")]),
        show_txn("txn mod greater", c))
    call("txn nested", lambda: c.transaction(
        compare=[t.version(p + "k") > 0],
        success=[t.txn(compare=[t.value(p + "ok") == "yes"],
                       success=[t.put(p + "nested", "in"), t.get(p + "ok")],
                       failure=[t.put(p + "nested", "out")]),
                 t.get(p + "nested")],
        failure=[]), show_txn("txn nested", c))
    call("txn same key twice (error)", lambda: c.transaction(
        compare=[], success=[t.put(p + "dup", "1"), t.put(p + "dup", "2")], failure=[]),
        show_txn("txn same key twice (error)", c))
    call("get prefix", lambda: c.get_prefix_response(p), show_range("get prefix"))


@scenario
def compaction(c, p):
    c.put(p + "k", "v1")
    c.put(p + "k", "v2")
    r = c.put(p + "k", "v3").header.revision
    out("compact", "r-1")
    call("compact r-1", lambda: c.compact(r - 1), lambda _: out("compact r-1 ok"))
    call("get rev r-2", lambda: rng(c, p + "k", revision=r - 2), show_range("get rev r-2"))
    call("get rev r-1", lambda: rng(c, p + "k", revision=r - 1), show_range("get rev r-1"))
    call("get rev future", lambda: rng(c, p + "k", revision=r + 1000),
         show_range("get rev future"))
    call("compact r-2 again", lambda: c.compact(r - 2), lambda _: out("compact r-2 again ok"))
    call("compact future", lambda: c.compact(r + 1000), lambda _: out("compact future ok"))
    call("compact physical r", lambda: c.compact(r, physical=True), lambda _: out("compact physical r ok"))
    call("get current", lambda: c.get_prefix_response(p), show_range("get current"))


@scenario
def errors(c, p):
    call("put empty key", lambda: c.put("", "v"), show_put("put empty key"))
    call("get empty key", lambda: c.get_response(""), show_range("get empty key"))
    call("put missing lease", lambda: c.put(p + "k", "v", lease=1234), show_put("put missing lease"))
    call("get after", lambda: c.get_prefix_response(p), show_range("get after"))
    call("delete empty key", lambda: c.delete("", return_response=True), show_del("delete empty key"))
    call("txn empty key put", lambda: c.transaction(compare=[], success=[c.transactions.put("", "v")], failure=[]),
         show_txn("txn empty key put", c))


@scenario
def watch(c, p):
    events = []
    import threading
    done = threading.Event()

    def cb(resp):
        if isinstance(resp, Exception):
            events.append(("error", resp))
            done.set()
            return
        for ev in resp.events:
            events.append(("event", ev))
        if sum(1 for e in events if e[0] == "event") >= 4:
            done.set()
    try:
        wid = c.add_watch_prefix_callback(p, cb, prev_kv=True)
    except Exception as e:  # noqa: BLE001
        err("watch create", e)
        return
    out("watch created")
    c.put(p + "a", "1")
    c.put(p + "a", "2")
    c.put(p[:-1] + "-outside", "x")
    c.delete(p + "a")
    c.put(p + "b", "3")
    done.wait(10)
    c.cancel_watch(wid)
    for kind, ev in events:
        if kind == "error":
            out("watch error", type(ev).__name__)
        else:
            prev = ev._event.prev_kv
            out(type(ev).__name__, "key=%s value=%s mod=%d version=%d" % (s(ev.key), s(ev.value), ev.mod_revision,
                                                                           ev.version),
                "prev_value=%s" % s(prev.value) if ev._event.HasField("prev_kv") else "no_prev")
    # A watch from a past revision replays history.
    try:
        evs, cancel = c.watch_prefix(p, start_revision=c.get_response(p + "b").kvs[0].mod_revision - 1)
    except Exception as e:  # noqa: BLE001
        err("watch replay", e)
        return
    n = 0
    for ev in evs:
        out("replay", type(ev).__name__, s(ev.key), s(ev.value), ev.mod_revision)
        n += 1
        if n == 2:
            break
    cancel()


@scenario
def lease(c, p):
    try:
        ls = c.lease(60)
    except Exception as e:  # noqa: BLE001
        err("lease grant", e)
        return
    out("lease granted ttl=%d id_nonzero=%s" % (ls.ttl, ls.id != 0))
    call("put with lease", lambda: c.put(p + "k", "v", lease=ls), show_put("put with lease"))
    call("get lease id", lambda: c.get_response(p + "k"), lambda r: out("key lease matches", r.kvs[0].lease == ls.id))
    call("lease info", lambda: c.get_lease_info(ls.id),
         lambda r: out("lease info grantedTTL=%d ttl_ok=%s keys=%s" % (r.grantedTTL, 0 < r.TTL <= 60,
                                                                       [k.decode() for k in r.keys])))
    call("refresh", lambda: ls.refresh(), lambda r: out("refresh responses=%d ttl=%d" % (len(r), r[0].TTL)))
    call("revoke", lambda: ls.revoke(), lambda r: out("revoked"))
    call("get after revoke", lambda: c.get_prefix_response(p), show_range("get after revoke"))
    call("revoke again", lambda: c.revoke_lease(ls.id), lambda r: out("revoked again"))
    call("lease info after revoke", lambda: c.get_lease_info(ls.id),
         lambda r: out("lease info after revoke TTL=%d grantedTTL=%d" % (r.TTL, r.grantedTTL)))


@scenario
def lock(c, p):
    name = p + "mutex"
    lk = c.lock(name, ttl=60)
    try:
        ok = lk.acquire(timeout=5)
    except Exception as e:  # noqa: BLE001
        err("lock acquire", e)
        return
    out("acquired", ok, "is_acquired", lk.is_acquired())
    call("lock key", lambda: c.get_response("/locks/" + name),
         lambda r: out("lock key count=%d value_is_uuid=%s" % (r.count, r.kvs[0].value == lk.uuid)))
    other = c.lock(name, ttl=60)
    out("contended acquire (timeout 1s)", other.acquire(timeout=1))
    out("release", lk.release(), "is_acquired", lk.is_acquired())
    out("release again", lk.release())
    out("acquire after release", other.acquire(timeout=5))
    out("second release", other.release())
    with c.lock(name, ttl=60) as third:
        out("context manager acquired", third.is_acquired())
    out("context manager released", third.is_acquired())
    call("lock key after", lambda: c.get_response("/locks/" + name), show_range("lock key after"))


@scenario
def auth_user_password(c, p):
    """Users, a role with a prefix permission, auth enable, clients with user/password."""
    from etcd3 import etcdrpc
    host, port = ENDPOINT
    stub = etcdrpc.AuthStub(c.channel)

    def rpc(label, method, req, client=None):
        md = client.metadata if client is not None else None
        return call(label, lambda: getattr(stub, method)(req, 10, metadata=md), lambda r: out(label, "ok"))

    rpc("enable without root", "AuthEnable", etcdrpc.AuthEnableRequest())
    rpc("user add root", "UserAdd", etcdrpc.AuthUserAddRequest(name="root", password="rootpw"))
    rpc("grant root", "UserGrantRole", etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"))
    rpc("role add", "RoleAdd", etcdrpc.AuthRoleAddRequest(name="pyrole"))
    perm = etcdrpc.auth__pb2.Permission(permType=2, key=p.encode(), range_end=p[:-1].encode() + b"0")
    rpc("grant prefix", "RoleGrantPermission", etcdrpc.AuthRoleGrantPermissionRequest(name="pyrole", perm=perm))
    rpc("user add", "UserAdd", etcdrpc.AuthUserAddRequest(name="pyuser", password="pypw"))
    rpc("grant role", "UserGrantRole", etcdrpc.AuthUserGrantRoleRequest(user="pyuser", role="pyrole"))
    rpc("enable", "AuthEnable", etcdrpc.AuthEnableRequest())
    try:
        try:
            etcd3.client(host=host, port=int(port), timeout=10, user="pyuser", password="wrong")
            out("wrong password accepted")
        except Exception as e:  # noqa: BLE001
            err("wrong password", e)
        u = etcd3.client(host=host, port=int(port), timeout=10, user="pyuser", password="pypw")
        # etcd3 0.12 sends the token as call credentials, which grpc refuses on a plain-text
        # channel (on both servers alike); its token metadata works.
        call("client put", lambda: u.put(p + "k", "v"), show_put("client put"))
        kvs = etcdrpc.KVStub(c.channel)
        call("put own prefix", lambda: kvs.Put(etcdrpc.PutRequest(key=(p + "k").encode(), value=b"v"), 10,
                                               metadata=u.metadata), show_put("put own prefix"))
        call("get own prefix", lambda: kvs.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=p[:-1].encode() + b"0"),
                                                 10, metadata=u.metadata), show_range("get own prefix"))
        call("put outside", lambda: kvs.Put(etcdrpc.PutRequest(key=b"py/elsewhere", value=b"v"), 10,
                                            metadata=u.metadata), show_put("put outside"))
        call("get outside", lambda: kvs.Range(etcdrpc.RangeRequest(key=b"py/elsewhere"), 10, metadata=u.metadata),
             show_range("get outside"))
        call("anonymous put", lambda: c.put(p + "anon", "v"), show_put("anonymous put"))
        call("user list as user", lambda: stub.UserList(etcdrpc.AuthUserListRequest(), 10, metadata=u.metadata),
             lambda r: out("user list", list(r.users)))
        u.close()
    finally:
        root = etcd3.client(host=host, port=int(port), timeout=10, user="root", password="rootpw")
        call("user list as root", lambda: stub.UserList(etcdrpc.AuthUserListRequest(), 10, metadata=root.metadata),
             lambda r: out("user list", list(r.users)))
        rpc("disable", "AuthDisable", etcdrpc.AuthDisableRequest(), root)
        root.close()
        call("delete keys", lambda: c.delete_prefix(p), show_del("delete keys"))
        rpc("user delete", "UserDelete", etcdrpc.AuthUserDeleteRequest(name="pyuser"))
        rpc("root delete", "UserDelete", etcdrpc.AuthUserDeleteRequest(name="root"))
        rpc("role delete", "RoleDelete", etcdrpc.AuthRoleDeleteRequest(role="pyrole"))


ENDPOINT = ("127.0.0.1", "2379")


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(SCENARIOS))
        return 0
    endpoint, name = sys.argv[1], sys.argv[2]
    host, port = endpoint.rsplit(":", 1)
    global ENDPOINT
    ENDPOINT = (host, port)
    c = etcd3.client(host=host, port=int(port), timeout=10)
    try:
        globals()[name](c, "py/%s/" % name)
    except Unimplemented:
        pass
    except Exception as e:  # noqa: BLE001
        err("scenario aborted", e)
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
