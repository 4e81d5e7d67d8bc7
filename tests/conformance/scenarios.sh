# Conformance scenarios, sourced by ./run. THIS FILE IS THE SCENARIO LIST:
# every function named `sc_<name>() {` (at the start of a line) is a scenario,
# run in file order, first against etcd and then against oxcd.
#
# Both servers start empty (revision 1) and receive exactly the same writes in
# the same order, so revisions in the transcripts must match verbatim. A new
# scenario therefore only affects revisions seen by the scenarios after it.
#
# Helpers (defined in ./run):
#   ctl ARGS...   etcdctl against the current server; command, stdout, stderr
#                 and exit code go into the transcript that is diffed
#   quiet ARGS... etcdctl for setup; output not recorded
#   rev           current revision of the current server (use it to build
#                 --rev=N arguments; the value is recorded via the command line)
#   note TEXT     free-form line in the transcript
#   ctl_for SECS ARGS...  like ctl, but stops etcdctl after SECS (keep-alive)
#   gw METHOD PATH [BODY]  curl to the JSON gateway; request, HTTP status and body
#                 go into the transcript
#   lease_grant TTL [ARGS...]  ctl lease grant, prints the new id (hex); ids are
#                 normalized to <LEASE_ID_n>. Revoke your leases at the end of a
#                 scenario so that later `lease list` output stays predictable.
# Use a key prefix of your own per scenario so scenarios stay independent.

# ------------------------------------------------------------------ put
sc_put() {
  ctl put foo bar
  ctl put foo bar2
  ctl put -w json foo bar3
  ctl put "key with spaces" "value with spaces"
  ctl put -- dash -leading-dash-value
  ctl get foo -w json
}

sc_put_prev_kv() {
  ctl put --prev-kv pk/a one
  ctl put --prev-kv pk/a two
  ctl put --prev-kv -w json pk/a three
}

sc_put_empty_key() {
  ctl put "" value
}

sc_put_missing_lease() {
  ctl put --lease=1234 lk v
  ctl get lk
}

# ------------------------------------------------------------------ get
sc_get_single() {
  quiet put g/one 1
  ctl get g/one
  ctl get g/does-not-exist
  ctl get g/one g/one   # empty range [k, k)
}

sc_get_prefix() {
  quiet put p/1 a
  quiet put p/2 b
  quiet put p/3 c
  quiet put p0 outside
  quiet put p outside-too
  ctl get --prefix p/
  ctl get --prefix p/no-such-prefix
  ctl get p/1 p/3       # explicit range end
}

sc_get_from_key() {
  quiet put zz/a 1
  quiet put zz/b 2
  quiet put zz/c 3
  ctl get --from-key zz/b
  ctl get --from-key zz/zz
  ctl get --from-key zz/a --keys-only
}

sc_get_rev() {
  local r
  r=$(rev)
  quiet put h/k v1
  quiet put h/k v2
  quiet put h/k v3
  quiet del h/k
  ctl get h/k --rev=$((r + 1))
  ctl get h/k --rev=$((r + 2)) -w json
  ctl get h/k --rev=$((r + 3))
  ctl get h/k --rev=$((r + 4))
  ctl get h/k
  ctl get --prefix h/ --rev=1
}

sc_get_limit() {
  quiet put l/1 a
  quiet put l/2 b
  quiet put l/3 c
  ctl get --prefix l/ --limit=2
  ctl get --prefix l/ --limit=2 -w json
  ctl get --prefix l/ --limit=3 -w json
  ctl get --prefix l/ --limit=0
}

sc_get_sort() {
  # Data with no ties in any sort target: order by KEY a b c d, CREATE c a d b,
  # MODIFY a c d b, VERSION a(1) c(2) b(3) d(4), VALUE b d c a.
  quiet put s/c mu
  quiet put s/a zeta
  quiet put s/d delta
  quiet put s/b alpha
  quiet put s/d delta2
  quiet put s/b alpha2
  quiet put s/d delta3
  quiet put s/c mu2
  quiet put s/d delta4
  quiet put s/b alpha3
  local target order
  for target in KEY CREATE MODIFY VERSION VALUE; do
    for order in ASCEND DESCEND; do
      ctl get --prefix s/ --sort-by="$target" --order="$order"
    done
  done
  ctl get --prefix s/ --order=DESCEND
  ctl get --prefix s/ --sort-by=VALUE
  ctl get --prefix s/ --sort-by=MODIFY --order=DESCEND --limit=2
}

sc_get_keys_only() {
  quiet put ko/a 1
  quiet put ko/b 2
  ctl get --prefix ko/ --keys-only
  ctl get --prefix ko/ --keys-only -w json
}

sc_get_count_only() {
  quiet put co/a 1
  quiet put co/b 2
  quiet put co/c 3
  ctl get --prefix co/ --count-only
  ctl get --prefix co/ --count-only -w json
  ctl get --prefix co/ --count-only --limit=1 -w json
  ctl get --prefix co/none --count-only
}

sc_get_print_value_only() {
  quiet put pv/a alpha
  quiet put pv/b beta
  ctl get --prefix pv/ --print-value-only
  ctl get pv/a --print-value-only
}

sc_get_json() {
  quiet put j/a "some value"
  quiet put j/b ""
  ctl get --prefix j/ -w json
  ctl get j/none -w json
}

sc_get_fields() {
  quiet put f/a x
  quiet put f/b y
  ctl get --prefix f/ -w fields
  ctl get f/none -w fields
}

# ------------------------------------------------------------------ del
sc_del_single() {
  quiet put d1/a 1
  ctl del d1/a
  ctl del d1/a
  ctl get d1/a
}

sc_del_prefix() {
  quiet put d2/a 1
  quiet put d2/b 2
  quiet put d2/c 3
  quiet put d2x keep
  ctl del --prefix d2/
  ctl get --prefix d2
}

sc_del_prev_kv() {
  quiet put d3/a 1
  quiet put d3/b 2
  quiet put d3/c 3
  ctl del --prev-kv d3/a
  ctl del --prev-kv --prefix d3/
  quiet put d3/j j
  ctl del --prev-kv -w json d3/j
}

sc_del_range() {
  quiet put d4/a 1
  quiet put d4/b 2
  quiet put d4/c 3
  ctl del d4/a d4/c
  ctl get --prefix d4/
}

# ------------------------------------------------------------------ txn
sc_txn_success() {
  quiet put t/k v
  ctl txn <<'EOF'
value("t/k") = "v"
mod("t/k") > "0"
version("t/k") = "1"
create("t/none") = "0"

put t/ok yes
get t/k
del t/nothing

put t/fail no

EOF
  ctl get --prefix t/
}

sc_txn_failure() {
  quiet put tf/k v
  ctl txn <<'EOF'
value("tf/k") = "other"

put tf/ok yes

put tf/fail no
get tf/k

EOF
  ctl txn <<'EOF'
version("tf/k") = "7"

put tf/ok yes


EOF
  ctl get --prefix tf/
}

sc_txn_json() {
  quiet put tj/k v
  ctl txn -w json <<'EOF'
value("tj/k") = "v"
create("tj/k") > "0"

put tj/ok yes
get tj/k

put tj/fail no

EOF
  ctl txn -w json <<'EOF'
mod("tj/k") < "1"

put tj/ok2 yes

get tj/k
del tj/ok

EOF
}

# ------------------------------------------------------------------ watch
sc_watch_key() {
  local r
  r=$(rev)
  watch_bg w/k --rev=$((r + 1))
  quiet put w/k v1
  quiet put w/other x
  quiet put w/k v2
  quiet del w/k
  watch_end 8
}

sc_watch_prefix_prev_kv() {
  local r
  quiet put wp/a old
  r=$(rev)
  watch_bg --prefix wp/ --prev-kv --rev=$((r + 1))
  quiet put wp/a new
  quiet put wp/b 1
  quiet put wpx outside
  quiet del --prefix wp/
  watch_end 15
}

sc_watch_rev_history() {
  local r
  r=$(rev)
  quiet put wh/k 1
  quiet put wh/k 2
  quiet del wh/k
  quiet put wh/k 3
  watch_bg wh/k --rev=$((r + 1))
  watch_end 11
  watch_bg wh/k --rev=$((r + 3)) --prev-kv
  watch_end 7
}

sc_watch_range() {
  local r
  r=$(rev)
  quiet put wr/a 1
  quiet put wr/b 2
  quiet put wr/c 3
  watch_bg wr/a wr/c --rev=$((r + 1))
  watch_end 6
}

sc_watch_interactive() {
  local r
  r=$(rev)
  WATCH_INTERACTIVE=1 watch_bg -i
  # One watcher's event is awaited before the next watch starts: otherwise which of the
  # two watchers on the stream reports first depends on when each create reached the
  # server (a late create catches up from history after the other's live event).
  watch_say "watch wi/k --rev=$((r + 1))"
  quiet put wi/k v
  watch_wait 3
  watch_say "watch --prefix wi/p --rev=$((r + 1))"
  quiet put wi/p1 w
  watch_wait 6
  watch_say progress
  WATCH_INTERACTIVE=1 watch_end 7
}

sc_watch_exec() {
  local r
  r=$(rev)
  # Writes first: a replay is one response whose header (ETCD_WATCH_REVISION)
  # is the current revision, on both servers, whatever the timing.
  quiet put we/k hello
  quiet del we/k
  watch_bg we/k --rev=$((r + 1)) -- sh -c 'echo "exec $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'
  watch_end 8
}

sc_watch_compacted() {
  local r
  quiet put wc/k 1
  quiet put wc/k 2
  r=$(rev)
  quiet compaction "$r"
  watch_bg wc/k --rev=$((r - 1))
  watch_end 1
}

sc_go_watch_events() {
  go_client watch_events
}

# ------------------------------------------------------------------ lease
sc_lease_grant_revoke() {
  local a b c
  a=$(lease_grant 60)
  b=$(lease_grant 1)            # raised to etcd's minimum TTL: 2 s
  c=$(lease_grant 120 -w json)
  ctl lease grant 9000000001    # too large lease TTL
  ctl lease revoke "$a"
  ctl lease revoke "$a"         # requested lease not found
  ctl lease revoke -w json "$b"
  ctl lease revoke 1234
  ctl lease revoke "$c"
  ctl lease list
}

sc_lease_put_timetolive() {
  local a
  a=$(lease_grant 600)
  ctl put --lease="$a" ls/k1 v1
  ctl lease timetolive "$a"
  ctl lease timetolive --keys "$a"
  ctl get ls/k1 -w json
  ctl put --ignore-lease ls/k1 v2
  ctl get ls/k1 -w json
  ctl put --lease=1234 ls/k2 v  # requested lease not found
  ctl lease timetolive --keys 1234
  ctl lease timetolive -w json 1234
  ctl lease revoke "$a"
  ctl get --prefix ls/ -w json
  ctl lease timetolive "$a"
}

sc_lease_txn() {
  local a
  a=$(lease_grant 600)
  ctl txn <<EOF
create("lt/k") = "0"

put --lease=$a lt/k v
put lt/plain p


EOF
  ctl lease timetolive --keys "$a"
  ctl lease revoke "$a"
  ctl get --prefix lt/
}

sc_lease_list() {
  local a b
  a=$(lease_grant 500)
  b=$(lease_grant 300)
  ctl lease list                # soonest expiry first
  ctl lease list -w json
  quiet lease revoke "$a"
  quiet lease revoke "$b"
  ctl lease list
}

sc_lease_keep_alive() {
  local a
  a=$(lease_grant 60)
  ctl lease keep-alive --once "$a"
  ctl lease keep-alive --once -w json "$a"
  ctl lease keep-alive --once 1234
  ctl_for 2 lease keep-alive "$a"   # one heart-beat (the next is due after TTL/3), then stopped
  ctl lease keep-alive 1234         # TTL 0: expired or revoked
  ctl lease revoke "$a"
}

sc_lease_expiry() {
  local a
  a=$(lease_grant 2)
  ctl put --lease="$a" le/k1 v1
  ctl put --lease="$a" le/k2 v2
  ctl get --prefix le/ --keys-only
  sleep 3.5                     # TTL 2 s; etcd checks for expired leases every 500 ms
  ctl get --prefix le/ -w json
  ctl lease timetolive "$a"
  ctl lease list
}

# ------------------------------------------------------------------ compaction
sc_compaction() {
  local r
  quiet put c/k v1
  quiet put c/k v2
  quiet put c/k v3
  r=$(rev)
  ctl compaction $((r - 1))
  ctl get c/k --rev=$((r - 2))
  ctl get c/k --rev=$((r - 1))
  ctl get c/k --rev=$((r + 1000))
  ctl compaction $((r - 2))
  ctl compaction $((r + 1000))
  ctl get c/k
}

sc_defrag() {
  local r
  quiet put df/k v1
  quiet put df/k v2
  r=$(rev)
  quiet compaction --physical "$r"
  ctl defrag
  ctl get df/k -w json
}

# ------------------------------------------------------------------ snapshot, alarms, hash
# snap_save FILE: `snapshot save FILE`, recorded with etcdctl's zap log lines on stderr
# reduced to their messages (they carry timestamps, sizes and durations) and the file's
# path as <FILE>; then whether the file ends with etcd's sha256 trailer (its size is 32
# past a multiple of 512, which `snapshot restore` relies on).
snap_save() {
  local f=$1 rc=0
  rm -f "$f"
  timeout 30 "$CTL_BIN" --endpoints="$EP" snapshot save "$f" >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
  {
    echo '$ etcdctl snapshot save <FILE>'
    sed -e "s|$f|<FILE>|g" "$WORK/ctl.out" | sed -e '$a\'
    grep -o '"msg":"[^"]*"' "$WORK/ctl.err" || true
    echo "[exit $rc]"
    echo "sha256 trailer: $(( $(stat -c %s "$f" 2>/dev/null || echo 0) % 512 == 32 ))"
  } >>"$OUT"
}

# snap_status FILE: the revision `snapshot status -w json` reports. etcd's snapshots are
# bbolt files, read by etcdctl; oxcd's are its own backend format, which only oxcdctl
# reads (DIFFERENCES.md); hash, key count and size depend on the format and are left out.
snap_status() {
  local f=$1 cli=$CTL_BIN rc=0
  if ! "$CTL_BIN" snapshot status "$f" >/dev/null 2>&1; then
    cli=${OXCDCTL_BIN:-${CARGO_TARGET_DIR:-target}/release/oxcdctl}
  fi
  "$cli" snapshot status -w json "$f" >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
  {
    echo '$ etcdctl snapshot status -w json <FILE>'
    grep -o '"revision":[0-9]*' "$WORK/ctl.out" || cat "$WORK/ctl.err"
    echo "[exit $rc]"
  } >>"$OUT"
}

sc_snapshot_save_status() {
  quiet put snap/a 1
  quiet put snap/a 2
  quiet put snap/b 3
  snap_save "$WORK/conformance-snapshot.db"
  snap_status "$WORK/conformance-snapshot.db"
  rm -f "$WORK/conformance-snapshot.db"
  ctl snapshot save
  ctl snapshot status "$WORK/no-such-snapshot.db"
}

sc_alarm_list_disarm() {
  ctl alarm list
  ctl alarm disarm
  ctl alarm list -w json
}

sc_endpoint_hashkv() {
  local r
  quiet put hk/a 1
  quiet put hk/a 2
  r=$(rev)
  quiet compaction "$((r - 1))"
  # The hash is over each server's own encoding of the key space (DIFFERENCES.md): only
  # the revisions and the header are compared.
  ctl endpoint hashkv -w json
  sed -i -E 's/"hash":[0-9]+/"hash":<HASH>/' "$OUT"
  ctl endpoint hashkv --rev="$r" -w json
  sed -i -E 's/"hash":[0-9]+/"hash":<HASH>/' "$OUT"
}

# ------------------------------------------------------------------ cluster
sc_endpoint_status() {
  ctl endpoint status
  ctl endpoint status -w table
  ctl endpoint status -w json
}

sc_member_list() {
  ctl member list
  ctl member list -w table
  ctl member list -w json
}

sc_endpoint_health() {
  ctl endpoint health
  ctl endpoint health -w json
}

# ------------------------------------------------------------------ JSON gateway (curl)
# Maintenance routes of the gateway: etcd 3.4 serves Hash on /v3/maintenance/hash (HashKV's
# annotation names the same path; the first registered wins) and MoveLeader on
# /v3/maintenance/transfer-leadership. A sole member is the leader: moving leadership to
# itself succeeds at once; to an unknown or zero id is `bad leader transferee`
# (FailedPrecondition, HTTP 412 through grpc-gateway v1).
sc_gw_maintenance_hash() {
  quiet put gwh/k v1
  gw POST /v3/maintenance/hash '{}'
  gw POST /v3/maintenance/hash ''
  gw GET /v3/maintenance/hash
}

sc_gw_transfer_leadership() {
  local self
  self=$(timeout 30 etcdctl --endpoints="$EP" member list -w json </dev/null 2>/dev/null \
           | grep -o '"ID":[0-9]*' | head -1 | cut -d: -f2 || true)
  gw POST /v3/maintenance/transfer-leadership '{}'
  gw POST /v3/maintenance/transfer-leadership '{"targetID":"12345"}'
  gw POST /v3/maintenance/transfer-leadership "{\"targetID\":\"$self\"}"
  gw GET /v3/maintenance/transfer-leadership
}

# ------------------------------------------------------------------ Go clientv3 programs
# Each runs go/<name>/main.go against the endpoint; see the comment at the top of each
# program for what it covers and what it normalizes itself (lease ids, timing).
sc_go_discovery() {
  go_client discovery
}

sc_go_gozero_layout() {
  go_client gozero_layout
}

sc_go_concurrency() {
  go_client concurrency
}

sc_go_naming() {
  go_client naming
}

sc_go_client_features() {
  go_client client_features
}

# ------------------------------------------------------------------ auth
# An etcdctl auth session: users, roles, a prefix permission, --user, permission denied,
# wrong password, root's rules, auth disable. Ends with auth disabled and nothing left.
sc_auth_session() {
  ctl auth enable
  ctl user add root --new-user-password=rootpw
  ctl user get root
  ctl role add app
  ctl role grant-permission app --prefix readwrite app/
  ctl role grant-permission app read conf
  ctl role get app
  ctl user add alice --new-user-password=alicepw
  ctl user grant-role alice app
  ctl auth enable
  ctl put app/a 1
  ctl --user=alice:alicepw put app/a 1
  ctl --user=alice:alicepw get --prefix app/
  ctl --user=alice:alicepw put conf x
  ctl --user=alice:alicepw get conf
  ctl --user=alice:alicepw get --prefix a
  ctl --user=alice:wrong get app/a
  ctl --user=nobody:pw get app/a
  ctl --user=alice:alicepw user list
  ctl --user=alice:alicepw user get alice
  ctl --user=alice:alicepw role get app
  ctl --user=alice:alicepw txn <<'TXN'
value("conf") = "x"

put app/b 2


TXN
  ctl --user=root:rootpw user list
  ctl --user=root:rootpw role list
  ctl --user=root:rootpw user delete root
  ctl --user=root:rootpw user revoke-role root root
  ctl --user=root:rootpw role revoke-permission app conf
  ctl --user=alice:alicepw get conf
  ctl --user=root:rootpw auth disable
  ctl get --prefix app/
  ctl user delete alice
  ctl user delete root
  ctl role delete app
  ctl role delete root
  ctl user list
  ctl role list
  ctl del --prefix app/
}

sc_go_auth_user_password() {
  go_client auth_user_password
}
