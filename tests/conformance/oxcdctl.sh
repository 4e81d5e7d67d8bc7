# oxcdctl vs etcdctl 3.4, byte for byte. Sourced by ./run (after the etcdctl scenarios).
#
# For each server kind (etcd, then oxcd) the scenario list of scenarios.sh (without the Go
# ones) plus the oxcdctl-only scenarios below runs twice, each time on a fresh server on the
# SAME ports (so member and cluster ids are the same): once driven by etcdctl, once by
# oxcdctl. The two normalized transcripts must be equal. Report lines:
#   PASS oxcdctl/<server>/<scenario>   FAIL oxcdctl/<server>/<scenario> + diff
#
#   OXCDCTL_BIN        the CLI under test (default ${CARGO_TARGET_DIR:-target}/release/oxcdctl,
#                      built with `cargo build --release -p oxcdctl` if absent)
#   CONFORMANCE_SKIP_OXCDCTL=1  skip this part
# Ports: client $PORT_BASE+4 (etcd) and +5 (oxcd), peer $PORT_BASE+14 and +15.


# ctl_od ARGS...: like ctl, but stdout is recorded as `od -c` (binary protobuf output).
ctl_od() {
  local rc=0
  timeout 30 "$CTL_BIN" --endpoints="$EP" "$@" >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
  {
    printf '$ etcdctl'; printf ' %q' "$@"; printf '\n'
    od -An -c "$WORK/ctl.out"
    if [ -s "$WORK/ctl.err" ]; then echo '[stderr]'; sed -e '$a\' "$WORK/ctl.err"; fi
    echo "[exit $rc]"
  } >>"$OUT"
}

# ------------------------------------------------- oxcdctl-only scenarios (ctlsc_<name>)
ctlsc_formats() {
  quiet put fmt/a "value a"
  quiet put fmt/b 'quote " and \ backslash'
  local f
  for f in simple json fields; do
    ctl get --prefix fmt/ -w "$f"
    ctl put fmt/c 3 --prev-kv -w "$f"
    ctl del fmt/c --prev-kv -w "$f"
  done
  ctl get --prefix fmt/ --hex
  ctl get --prefix fmt/ -w table
  ctl get --prefix fmt/ -w yaml
  ctl_od get --prefix fmt/ -w protobuf
  ctl_od put fmt/d 4 -w protobuf
  ctl get fmt/a --print-value-only -w json
  ctl get fmt/a --consistency=s
  ctl get fmt/a --consistency=x
  ctl get fmt/a --order=sideways
  ctl get fmt/a --sort-by=colour
  ctl get --prefix --from-key fmt/
  ctl get fmt/a fmt/b --prefix
  ctl get
  ctl put
  ctl put fmt/e v --lease=xyz
  ctl put fmt/e --ignore-value v
  ctl del
  ctl del fmt/a --prefix --from-key
}

ctlsc_txn_more() {
  quiet put tx/k v1
  ctl txn -i <<'EOF2'
value("tx/k") = "v1"

put tx/k v2
get tx/k

del tx/k

EOF2
  ctl txn -w fields <<'EOF2'
mod("tx/k") > "0"
version("tx/k") != "7"

get tx/k --prefix
put "tx/quoted key" "a value"

get tx/none

EOF2
  ctl txn -w json <<'EOF2'
create("tx/k") < "1"

EOF2
  ctl_od txn -w protobuf <<'EOF2'
value("tx/k") = "v2"

get tx/k

EOF2
  ctl txn <<'EOF2'
bogus
EOF2
  ctl txn <<'EOF2'
value("tx/k") =

EOF2
  ctl txn <<'EOF2'
version("tx/k") = "x"

EOF2
  ctl txn <<'EOF2'


frobnicate tx/k

EOF2
  ctl txn <<'EOF2'


put tx/k

EOF2
  ctl txn <<'EOF2'

put tx/k v3
EOF2
  ctl txn extra-arg </dev/null
}

ctlsc_lease_more() {
  local a
  a=$(lease_grant 100)
  ctl lease timetolive "$a" -w fields
  ctl lease keep-alive --once "$a" -w fields
  ctl lease list -w fields
  ctl_od lease grant 100 -w protobuf
  ctl lease revoke "$a" -w fields
  ctl lease grant
  ctl lease grant abc
  ctl lease revoke zz
  ctl lease timetolive
  ctl lease keep-alive
  a=$(lease_grant 100)
  quiet put lm/k v --lease="$a"
  ctl lease timetolive "$a" --keys -w json
  ctl lease revoke "$a"
  local l
  for l in $(timeout 10 "$CTL_BIN" --endpoints="$EP" lease list 2>/dev/null | tail -n +2); do
    quiet lease revoke "$l"
  done
}

ctlsc_cluster_more() {
  ctl member list -w fields
  ctl_od member list -w protobuf
  ctl member remove
  ctl member remove zz
  ctl member remove 1234
  ctl member update 1234
  ctl member update 1234 --peer-urls=http://127.0.0.1:1
  ctl member promote 1234
  ctl member add
  ctl member add a b http://x
  ctl member add newbie
  ctl endpoint hashkv
  ctl endpoint hashkv -w json
  ctl endpoint hashkv -w fields
  ctl endpoint hashkv -w table
  ctl endpoint status -w fields
  ctl endpoint status -w protobuf
  ctl endpoint health -w fields
  ctl endpoint health -w table
  ctl alarm list
  ctl alarm list -w json
  ctl alarm disarm
  ctl alarm list extra
  ctl move-leader
  ctl move-leader zz
  ctl compaction
  ctl compaction abc
  ctl version
}

ctlsc_cluster_endpoints() {
  ctl endpoint hashkv --cluster
  ctl endpoint status --cluster
  ctl defrag --cluster
}

ctlsc_watch_more() {
  local r
  r=$(rev)
  quiet put wm/a 1
  quiet put wm/b 2
  quiet del wm/a
  watch_bg --prefix wm/ --rev=$((r + 1)) -w json
  watch_end 3
  watch_bg --prefix wm/ --rev=$((r + 1)) -w fields --prev-kv
  watch_end 30
  watch_bg wm/a --rev=$((r + 1)) --hex
  watch_end 4
  ctl watch wm/a wm/b --prefix
  ctl watch wm/a --
  ctl watch
}

ctlsc_auth() {
  ctl user list
  ctl role list
  ctl role add r1
  ctl role add r1
  ctl role grant-permission r1 readwrite au/ --prefix
  ctl role grant-permission r1 read au/x au/z
  ctl role grant-permission r1 write au/only
  ctl role grant-permission r1 read au/open --from-key
  ctl role grant-permission r1 bogus au/
  ctl role grant-permission r1
  ctl role get r1
  ctl role get r1 -w json
  ctl role get r1 -w fields
  ctl role list -w fields
  ctl role list -w json
  ctl user add u1 --new-user-password=pw1
  ctl user add u2:pw2 -w json
  ctl user add :pw
  ctl user add u1 --new-user-password=pw1
  ctl user grant-role u1 r1
  ctl user grant-role u1 nosuch
  ctl user get u1
  ctl user get u1 --detail
  ctl user get u1 -w json
  ctl user list
  ctl user list -w json
  ctl role revoke-permission r1 au/ --prefix
  ctl role revoke-permission r1 au/x au/z
  ctl role revoke-permission r1 au/only
  ctl role revoke-permission r1 au/open --from-key
  ctl role revoke-permission r1 au/missing
  ctl user revoke-role u1 r1
  ctl user revoke-role u1 r1
  ctl user get nosuch
  ctl user delete u2
  ctl user delete u1
  ctl role delete r1
  ctl role delete r1
  ctl user add root --new-user-password=rootpw
  ctl auth enable
  ctl get au/k
  ctl --user=root:wrong get au/k
  ctl --user=root:rootpw put au/k v
  ctl --user=root --password=rootpw get au/k
  ctl --user=root:rootpw auth disable
  ctl user delete root
  ctl role delete root
}

ctlsc_lock_elect() {
  quiet put le/seed x
  ctl lock le/lock -- sh -c 'echo "got $ETCD_LOCK_KEY" | sed -E "s/[0-9a-f]+$/<lease>/"'
  ctl lock le/lock false
  ctl lock --ttl=5 le/lock -- sh -c 'test -n "$ETCD_LOCK_REV" && echo rev-set'
  ctl elect
  ctl elect e1
  ctl elect -l e1 proposal
  # Held until SIGTERM (then unlocked / resigned): the key carries the session's lease id.
  ctl_for 2 lock le/held
  ctl_for 2 elect le/e2 proposal-1
  ctl_for 2 elect -l le/e3
  ctl get --prefix le/ --keys-only
}

ctlsc_snapshot() {
  local f=$WORK/snapshot.db
  rm -f "$f"
  ctl snapshot save "$f"
  local w
  for w in simple json fields table protobuf; do
    ctl snapshot status "$f" -w "$w"
  done
  ctl snapshot status "$WORK/no-such-file.db"
  ctl snapshot save
  rm -f "$f"
}

ctlsc_errors() {
  ctl -w yaml get foo
  ctl --cacert= get foo
  ctl --endpoints=127.0.0.1:1 --dial-timeout=1s --command-timeout=2s get foo
}

# Last, since it changes the membership: a learner (no vote, so the cluster stays
# available) added, updated, refused promotion (never in sync) and removed. Its id is
# chosen by the server: normalized like a lease id.
ctlsc_member_learner() {
  ctl member add learner1 --learner --peer-urls=http://127.0.0.1:1
  local id
  id=$(sed -nE 's/^Member +([0-9a-f]+) added to cluster.*/\1/p' "$WORK/ctl.out")
  if [ -n "$id" ]; then echo "$id" >>"$OUT.leases"; fi
  ctl member update "${id:-1}" --peer-urls=http://127.0.0.1:2
  ctl member promote "${id:-1}"
  ctl member remove "${id:-1}"
  ctl member list
}

# ----------------------------------------------------------------------- the run
# Differences known and explained (README.md); reported as KNOWN-DIFFERENCE, not FAIL:
#   get_count_only: etcdctl 3.4 has no --count-only; on an unknown flag etcdctl prints
#     cobra's usage text on stdout, oxcdctl only the `Error:` lines.
#   oxcd/cluster_endpoints: etcdctl's per-endpoint calls to an http:// member URL send the
#     :authority `http://host:port`, which oxcd's HTTP/2 server refuses (RST_STREAM
#     PROTOCOL_ERROR); oxcdctl sends host:port and succeeds. An oxcd bug to fix.
#   oxcd/snapshot: oxcd's snapshot file is its own (a dump of its backend), which etcdctl 3.4's
#     `snapshot status` cannot open ("invalid database") and oxcdctl reads
#     (tests/conformance/DIFFERENCES.md).
OXCDCTL_KNOWN_DIFFERENCES=" etcd/get_count_only oxcd/get_count_only oxcd/cluster_endpoints oxcd/snapshot "

oxcdctl_scenarios() { # the scenario functions, in order
  local s
  for s in "${SCENARIOS[@]}"; do
    case $s in go_*) continue ;; esac
    selected "$s" && echo "sc_$s"
  done
  sed -nE 's/^ctlsc_([A-Za-z0-9_]+)\(\).*/\1/p' "$HERE/oxcdctl.sh" | while read -r s; do
    selected "$s" && echo "ctlsc_$s"
  done
}

# What differs between two fresh servers of one kind beyond normalize(): KV hashes (lease
# ids are in the values), raft indexes, timings and sizes in the fields/--cluster forms,
# a snapshot's key count (lease records of lock/elect sessions expire on their own clock).
normalize_ctl() {
  sed -E -e 's/("hash":|"Hash" : )[0-9]+/\1<HASH>/g' \
    -e 's/^((http:\/\/)?127\.0\.0\.1:<CLIENT_PORT>), [0-9]+$/\1, <HASH>/' \
    -e 's/^(\| 127\.0\.0\.1:<CLIENT_PORT> \|) [0-9]+ \|$/\1 <HASH> |/' \
    -e 's/^("(RaftIndex|RaftAppliedIndex|DBSize|RaftTerm)" : )[0-9]+$/\1<N>/' \
    -e 's/^("Took" : ).*/\1<DURATION>/' \
    -e 's/"ts":[0-9.e+]+/"ts":<TS>/; s/"took":[0-9.e-]+/"took":<DURATION>/' \
    -e 's/^[0-9a-f]{1,8}, ([0-9]+), ([0-9]+), [0-9.]+ [kMG]?B$/<HASH>, \1, <KEYS>, <SIZE>/' \
    -e 's/^\| [0-9a-f]{1,8} \| ([0-9]+) \| ([0-9]+) \| [0-9.]+ [kMG]?B \|$/| <HASH> | \1 | <KEYS> | <SIZE> |/' \
    -e 's/"totalSize":[0-9]+/"totalSize":<SIZE>/; s/^("Size" : )[0-9]+$/\1<SIZE>/' \
    -e 's/"totalKey":[0-9]+/"totalKey":<KEYS>/; s/^("Keys" : )[0-9]+$/\1<KEYS>/' \
    -e 's/("size":)"[^"]*"/\1"<SIZE>"/' \
    -e 's#^(le/(held|e2))/[0-9a-f]+$#\1/<SESSION_LEASE>#' \
    -e 's/^Member +</Member </' \
    -e 's/^(\| 127\.0\.0\.1:<CLIENT_PORT> \| true \|) [^|]+ \|/\1 <DURATION> |/' \
    -e 's/^(http:\/\/127\.0\.0\.1:<CLIENT_PORT>, [^,]+, )[^,]+, [^,]+, (true|false), (true|false), [0-9]+, [0-9]+, [0-9]+, /\1<VERSION>, <SIZE>, \2, \3, <TERM>, <INDEX>, <INDEX>, /' |
    awk '
      # The members of ETCD_INITIAL_CLUSTER come in member id order (random ids): sort them.
      /^ETCD_INITIAL_CLUSTER="/ {
        v = $0; sub(/^ETCD_INITIAL_CLUSTER="/, "", v); sub(/"$/, "", v)
        n = split(v, m, ",")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && m[j - 1] > m[j]; j--) { t = m[j]; m[j] = m[j - 1]; m[j - 1] = t }
        v = m[1]; for (i = 2; i <= n; i++) v = v "," m[i]
        print "ETCD_INITIAL_CLUSTER=\"" v "\""; next
      }
      { print }'
}

# wait_for FILE PATTERN: up to 10 s for a line matching PATTERN (extended regex) in FILE.
wait_for() {
  local i
  for i in $(seq 1 100); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# oxcdctl_service_check CLI: `service register` / `service list [--watch]` (oxcdctl only, no
# etcdctl counterpart): the registration is there with etcd's endpoint JSON while the command
# runs, a watcher sees it go, and nothing is left after Ctrl-C. Problems go to $1.check.
oxcdctl_service_check() {
  local cli=$1 out=$WORK/service.check reg=$WORK/service.reg watch=$WORK/service.watch pid wpid got
  : >"$out"
  "$cli" --endpoints="$EP" service register web 10.0.0.5:80 --ttl 5 --meta zone=a </dev/null >"$reg" 2>&1 &
  pid=$!
  wait_for "$reg" '^registered web/10\.0\.0\.5:80 ' || echo "no registration line: $(cat "$reg")" >>"$out"
  got=$("$cli" --endpoints="$EP" service list web 2>&1)
  [ "$got" = "10.0.0.5:80" ] || echo "service list: $got" >>"$out"
  got=$(etcdctl --endpoints="$EP" get web/10.0.0.5:80 --print-value-only 2>&1)
  [ "$got" = '{"Addr":"10.0.0.5:80","Metadata":{"zone":"a"}}' ] || echo "stored value: $got" >>"$out"
  "$cli" --endpoints="$EP" service list web --watch </dev/null >"$watch" 2>&1 &
  wpid=$!
  wait_for "$watch" '^10\.0\.0\.5:80$' || echo "watch listing: $(cat "$watch")" >>"$out"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  tail -1 "$reg" | grep -qx 'deregistered web/10.0.0.5:80' || echo "register output: $(cat "$reg")" >>"$out"
  wait_for "$watch" '^- 10\.0\.0\.5:80$' || echo "watch output: $(cat "$watch")" >>"$out"
  kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null || true
  got=$(etcdctl --endpoints="$EP" get --prefix web/ 2>&1)
  [ -z "$got" ] || echo "left after deregistration: $got" >>"$out"
}

# oxcdctl_pass KIND SERVER_BIN CLI: a fresh server, every scenario driven by CLI.
oxcdctl_pass() {
  local kind=$1 bin=$2 cli=$3 label="ctl-$1-$(basename "$3")" f
  if ! start_server "$label" "$bin" $CTL_CLIENT $CTL_PEER; then
    log "oxcdctl: $kind did not start"; return 1
  fi
  learn_ids "$label" $CTL_CLIENT
  mkdir -p "$WORK/$label"
  for f in $(oxcdctl_scenarios); do
    CTL_BIN=$cli EP=127.0.0.1:$CTL_CLIENT OUT=$WORK/$label/$f.raw
    : >"$OUT"
    "$f" </dev/null
    normalize "$label" $CTL_CLIENT $CTL_PEER "$OUT.leases" <"$OUT" | normalize_ctl >"$WORK/$label/$f.norm"
  done
  CTL_BIN=etcdctl
  if [ "$cli" != etcdctl ] && selected service_registry; then
    EP=127.0.0.1:$CTL_CLIENT oxcdctl_service_check "$cli"
  fi
  stop_server "$label"
}

run_oxcdctl() {
  if [ "${CONFORMANCE_SKIP_OXCDCTL:-0}" = 1 ]; then log "skipping oxcdctl (CONFORMANCE_SKIP_OXCDCTL=1)"; return 0; fi
  if [ -z "${OXCDCTL_BIN:-}" ]; then
    local target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$REPO/$target ;; esac
    OXCDCTL_BIN=$target/release/oxcdctl
    if [ ! -x "$OXCDCTL_BIN" ]; then
      log "building oxcdctl (cargo build --release -p oxcdctl)"
      (cd "$REPO" && cargo build --release -p oxcdctl) >&2
    fi
  fi
  local kind bin f name started=$SECONDS offset=0 top=$WORK
  # The two server kinds run side by side (own ports, own scratch dir); within a kind the
  # etcdctl pass and the oxcdctl pass run one after the other on the same ports.
  for kind in etcd oxcd; do
    if [ $kind = etcd ]; then bin=$ETCD_BIN; else bin=$OXCD_BIN; fi
    (
      WORK=$top/ctl-$kind-work
      mkdir -p "$WORK"
      CTL_CLIENT=$((PORT_BASE + 4 + offset)) CTL_PEER=$((PORT_BASE + 14 + offset))
      oxcdctl_pass $kind "$bin" etcdctl && oxcdctl_pass $kind "$bin" "$OXCDCTL_BIN"
    ) &
    offset=$((offset + 1))
  done
  wait
  for kind in etcd oxcd; do
    for f in $(oxcdctl_scenarios); do
      name=${f#sc_}; name=${name#ctlsc_}
      local ref=$top/ctl-$kind-work/ctl-$kind-etcdctl/$f.norm got=$top/ctl-$kind-work/ctl-$kind-oxcdctl/$f.norm
      if [ ! -f "$ref" ] || [ ! -f "$got" ]; then
        echo "no transcript (server did not start?)" >"$top/ctl-$kind-$name.diff"
        report FAIL "oxcdctl/$kind/$name" "$top/ctl-$kind-$name.diff"
      elif diff -u --label "etcdctl/$kind/$name" --label "oxcdctl/$kind/$name" "$ref" "$got" >"$top/ctl-$kind-$name.diff"; then
        report PASS "oxcdctl/$kind/$name"
      elif [[ $OXCDCTL_KNOWN_DIFFERENCES == *" $kind/$name "* ]]; then
        echo "KNOWN-DIFFERENCE oxcdctl/$kind/$name (see oxcdctl.sh)"
      else
        report FAIL "oxcdctl/$kind/$name" "$top/ctl-$kind-$name.diff"
      fi
    done
  done
  for kind in etcd oxcd; do
    selected service_registry || continue
    local check=$top/ctl-$kind-work/service.check
    if [ -f "$check" ] && [ ! -s "$check" ]; then
      report PASS "oxcdctl/$kind/service_registry"
    else
      [ -f "$check" ] || echo "not run (server did not start?)" >"$check"
      report FAIL "oxcdctl/$kind/service_registry" "$check"
    fi
  done
  log "oxcdctl comparison took $((SECONDS - started)) s"
}
