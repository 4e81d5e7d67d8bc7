# Patroni over the JSON gateway, sourced by ./run (after the client suites).
#
# Debian's `patroni` and PostgreSQL 15: three Patroni nodes, each with its PostgreSQL on
# loopback, use one store (etcd 3.4, then oxcd) as their `etcd3` DCS, which Patroni reaches
# only through the gateway (/v3/kv/*, /v3/lease/*, /v3/watch). Against each store:
#
#   patroni_<store>_bootstrap  the cluster bootstraps: `patronictl list` shows one Leader
#                              and two replicas running, on timeline 1
#   patroni_<store>_pause      the store is stopped (SIGSTOP) for PATRONI_PAUSE s (< TTL) and
#                              resumed: after the leader's HA loop has reached the store
#                              again, the leader, its role and the timeline are unchanged
#                              (nothing failed over: the leader key's lease survived the
#                              stall; failsafe_mode keeps the primary up meanwhile)
#   patroni_<store>_failover   the leader's Patroni and PostgreSQL are killed (SIGKILL): a
#                              replica becomes Leader on a new timeline within TTL + loop_wait +
#                              PATRONI_PROMOTE_SLACK s (the dead leader's key goes with its
#                              lease after at most TTL; the watching replicas then race)
#
# Every wait polls patronictl or Patroni's REST API against a deadline. PostgreSQL refuses
# to run as root, so the nodes run as the `postgres` user when the suite runs as root.
# CONFORMANCE_SKIP_PATRONI=1 skips it. Ports: store client PORT_BASE+40 (etcd) / +41 (oxcd),
# peer +42 / +43; Patroni REST +50..+52 and PostgreSQL +53..+55 (etcd run), +56..+58 and
# +59..+61 (oxcd run).

PATRONI_TTL=10 PATRONI_LOOP_WAIT=1 PATRONI_RETRY_TIMEOUT=4
PATRONI_PAUSE=5            # seconds the store is stopped: < TTL
PATRONI_PROMOTE_SLACK=6    # promotion of the new leader after its lock, a loaded CI machine
PATRONI_PY=/usr/bin/python3
PG_BIN_DIR=

patroni_deps() {
  local need=()
  command -v patroni >/dev/null 2>&1 || need+=(patroni)
  command -v patronictl >/dev/null 2>&1 || need+=(patroni)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    log "patroni: installing ${need[*]} (apt-get)"
    apt_install "${need[@]}" || return 1
  fi
  # The Debian postgresql package starts its own cluster where it can: not needed here.
  PG_BIN_DIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PG_BIN_DIR/postgres" ] || { log "patroni: no PostgreSQL server binaries"; return 1; }
}

# patroni_config DIR NAME STORE_PORT REST_PORT PG_PORT SCOPE
patroni_config() {
  local dir=$1 name=$2 store=$3 rest=$4 pg=$5 scope=$6
  cat >"$dir/$name.yml" <<EOF
scope: $scope
namespace: /service/
name: $name
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$store
  protocol: http
bootstrap:
  dcs:
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    failsafe_mode: true
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: false
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 16MB
  initdb:
  - encoding: UTF8
  - auth: trust
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $dir/$name/data
  bin_dir: $PG_BIN_DIR
  pgpass: $dir/$name/pgpass
  authentication:
    superuser:
      username: postgres
      password: patroni-ci
    replication:
      username: replicator
      password: patroni-ci
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication replicator 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: '$dir/$name'
    shared_buffers: 16MB
    max_connections: 20
    fsync: 'off'
    synchronous_commit: 'off'
tags:
  nofailover: false
  noloadbalance: false
EOF
  mkdir -p "$dir/$name"
}

# patroni_list CFG: one line "LEADER TL RUNNING_REPLICAS MEMBERS" from `patronictl list`
# (LEADER '-' if none), or nothing when patronictl fails.
patroni_list() {
  timeout 10 patronictl -c "$1" list -f json 2>/dev/null </dev/null | "$PATRONI_PY" -c '
import json, sys
try:
    rows = json.load(sys.stdin)
except Exception:
    sys.exit(1)
leaders = [r for r in rows if r.get("Role") == "Leader" and r.get("State") == "running"]
replicas = [r for r in rows if r.get("Role") in ("Replica", "Sync Standby")
            and r.get("State") in ("running", "streaming")]
print(leaders[0]["Member"] if len(leaders) == 1 else "-",
      leaders[0].get("TL", "-") if len(leaders) == 1 else "-",
      len(replicas), len(rows))
' 2>/dev/null || true
}

# patroni_rest PORT FIELD: a field of the node's GET /patroni, or nothing.
patroni_rest() {
  curl -s -m 3 "http://127.0.0.1:$1/patroni" 2>/dev/null | "$PATRONI_PY" -c '
import json, sys
try:
    print(json.load(sys.stdin).get(sys.argv[1], ""))
except Exception:
    pass
' "$2" 2>/dev/null || true
}

# patroni_scenario LABEL STORE_BIN STORE_PORT STORE_PEER REST0 PG0
patroni_scenario() {
  local label=$1 bin=$2 sport=$3 speer=$4 rest0=$5 pg0=$6
  local dir=$WORK/patroni-$label scope=oxcd-ci-$label
  local names=(n1 n2 n3) i details list t0 elapsed
  local -A PPID_OF=() REST_OF=()
  mkdir -p "$dir"
  details=$WORK/patroni-$label.details
  : >"$details"
  if ! start_server "patroni-store-$label" "$bin" "$sport" "$speer"; then
    echo "$label did not start" >"$details"
    report FAIL "patroni_${label}_bootstrap" "$details"; return 0
  fi
  chmod 711 "$WORK"
  for i in 0 1 2; do
    patroni_config "$dir" "${names[$i]}" "$sport" $((rest0 + i)) $((pg0 + i)) "$scope"
    REST_OF[${names[$i]}]=$((rest0 + i))
  done
  chown -R postgres:postgres "$dir" 2>/dev/null || true
  for i in 0 1 2; do
    local n=${names[$i]}
    # A simple command in the background: $! is Patroni itself (setpriv execs it).
    if [ "$(id -u)" = 0 ]; then
      HOME=$dir setpriv --reuid=postgres --regid=postgres --init-groups -- \
        patroni "$dir/$n.yml" </dev/null >"$dir/$n.log" 2>&1 &
    else
      HOME=$dir patroni "$dir/$n.yml" </dev/null >"$dir/$n.log" 2>&1 &
    fi
    PPID_OF[$n]=$!
    PATRONI_PIDS+=("$!")
  done

  # 1. Bootstrap: one Leader on timeline 1 and two running replicas.
  local leader="" tl="" deadline=$((SECONDS + 90))
  t0=$SECONDS
  while [ $SECONDS -lt $deadline ]; do
    list=$(patroni_list "$dir/n1.yml")
    read -r leader tl reps members <<<"${list:-- - 0 0}"
    if [ "$leader" != "-" ] && [ "$reps" = 2 ]; then break; fi
    sleep 0.5
  done
  if [ "$leader" != "-" ] && [ "$reps" = 2 ] && [ "$tl" = 1 ]; then
    log "patroni/$label: bootstrapped in $((SECONDS - t0)) s, leader $leader (timeline $tl)"
    timeout 10 patronictl -c "$dir/n1.yml" list </dev/null 2>&1 | sed 's/^/    /' >&2 || true
    report PASS "patroni_${label}_bootstrap"
  else
    {
      echo "no Leader with two running replicas on timeline 1 within 90 s (last: ${list:-patronictl failed})"
      timeout 10 patronictl -c "$dir/n1.yml" list </dev/null 2>&1 || true
      for n in "${names[@]}"; do echo "--- $n.log (tail)"; tail -n 15 "$dir/$n.log"; done
    } >>"$details"
    report FAIL "patroni_${label}_bootstrap" "$details"
    patroni_stop_all "$dir"; stop_server "patroni-store-$label"; return 0
  fi

  # 2. The store stops for less than the TTL: nothing fails over. (Patroni's client gives
  # up on a store after retry_timeout/3 s; without failsafe_mode a leader that cannot reach
  # its store demotes itself. With it, it stays primary while it reaches every member
  # listed in the /failsafe key, which it writes once the mode is on: awaited first.)
  : >"$details"
  local spid=${PIDS[patroni-store-$label]} resumed seen role ok=1 fs=""
  deadline=$((SECONDS + 20))
  while [ $SECONDS -lt $deadline ]; do
    fs=$(timeout 5 etcdctl --endpoints="127.0.0.1:$sport" get "/service/$scope/failsafe" \
           --print-value-only </dev/null 2>/dev/null || true)
    [[ $fs == *n1* && $fs == *n2* && $fs == *n3* ]] && break
    sleep 0.5
  done
  kill -STOP "$spid"
  sleep "$PATRONI_PAUSE"   # the fault's length itself, not a wait for an event
  kill -CONT "$spid"
  resumed=$(date +%s)
  # Await the leader's HA loop reaching the store again after the resume.
  deadline=$((SECONDS + PATRONI_TTL + 10))
  seen=0
  while [ $SECONDS -lt $deadline ]; do
    seen=$(patroni_rest "${REST_OF[$leader]}" dcs_last_seen)
    [ "${seen:-0}" -gt "$resumed" ] 2>/dev/null && break
    sleep 0.5
  done
  role=$(patroni_rest "${REST_OF[$leader]}" role)
  list=$(patroni_list "$dir/n1.yml")
  read -r l2 tl2 reps2 members2 <<<"${list:-- - 0 0}"
  if ! [ "${seen:-0}" -gt "$resumed" ] 2>/dev/null; then
    ok=0; echo "the leader $leader did not reach the store within $((PATRONI_TTL + 10)) s of the resume (dcs_last_seen ${seen:-?}, resumed $resumed)" >>"$details"
  fi
  if [ "$role" != master ] && [ "$role" != primary ]; then
    ok=0; echo "the leader $leader is now '$role' (it demoted during a ${PATRONI_PAUSE} s store pause)" >>"$details"
  fi
  if [ "$l2" != "$leader" ] || [ "$tl2" != "$tl" ]; then
    ok=0; echo "leader/timeline changed: $leader/$tl -> $l2/$tl2" >>"$details"
  fi
  if [ $ok = 1 ]; then
    log "patroni/$label: store stopped ${PATRONI_PAUSE} s; leader $leader kept its role (timeline $tl2, $reps2 replicas)"
    report PASS "patroni_${label}_pause"
  else
    for n in "${names[@]}"; do echo "--- $n.log (tail)" >>"$details"; tail -n 15 "$dir/$n.log" >>"$details"; done
    report FAIL "patroni_${label}_pause" "$details"
  fi

  # 3. Kill the leader's Patroni and PostgreSQL: a replica takes over.
  : >"$details"
  local pgpid survivor
  list=$(patroni_list "$dir/n1.yml")
  read -r leader tl reps members <<<"${list:-- - 0 0}"
  pgpid=$(head -1 "$dir/$leader/data/postmaster.pid" 2>/dev/null || true)
  kill -9 "${PPID_OF[$leader]}" 2>/dev/null || true
  [ -n "$pgpid" ] && kill -9 "$pgpid" 2>/dev/null || true
  t0=$(date +%s%N)
  for n in "${names[@]}"; do [ "$n" != "$leader" ] && survivor=$n; done
  local limit=$((PATRONI_TTL + PATRONI_LOOP_WAIT + PATRONI_PROMOTE_SLACK)) new="-"
  deadline=$((SECONDS + limit))
  while [ $SECONDS -lt $deadline ]; do
    list=$(patroni_list "$dir/$survivor.yml")
    read -r new tl3 reps3 members3 <<<"${list:-- - 0 0}"
    # Done once the new leader has also finished its promotion (a new timeline): between
    # taking the lock and that, patronictl already names it Leader on the old timeline.
    if [ "$new" != "-" ] && [ "$new" != "$leader" ] && [ "${tl3:-0}" -gt "${tl:-0}" ] 2>/dev/null; then break; fi
    sleep 0.25
  done
  elapsed=$((($(date +%s%N) - t0) / 1000000))
  if [ "$new" != "-" ] && [ "$new" != "$leader" ] && [ "${tl3:-0}" -gt "${tl:-0}" ] 2>/dev/null; then
    log "patroni/$label: $leader killed; $new leads on timeline $tl3 after $elapsed ms (TTL ${PATRONI_TTL} s)"
    timeout 10 patronictl -c "$dir/$survivor.yml" list </dev/null 2>&1 | sed 's/^/    /' >&2 || true
    report PASS "patroni_${label}_failover"
  else
    {
      echo "no new leader on a timeline after $tl within $limit s of killing $leader (last: ${list:-patronictl failed})"
      for n in "${names[@]}"; do echo "--- $n.log (tail)"; tail -n 15 "$dir/$n.log"; done
    } >>"$details"
    report FAIL "patroni_${label}_failover" "$details"
  fi
  patroni_stop_all "$dir"
  stop_server "patroni-store-$label"
}

# patroni_stop_all DIR: stops every Patroni started and the PostgreSQL instances under DIR.
patroni_stop_all() {
  local pid d i
  for pid in "${PATRONI_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PATRONI_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PATRONI_PIDS=()
  for d in "$1"/*/data; do
    pid=$(head -1 "$d/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then
      kill -9 "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}

PATRONI_PIDS=()
run_patroni() {
  if [ "${CONFORMANCE_SKIP_PATRONI:-0}" = 1 ]; then log "skipping Patroni (CONFORMANCE_SKIP_PATRONI=1)"; return 0; fi
  selected patroni || return 0
  if ! patroni_deps; then
    echo "could not install patroni/postgresql" >"$WORK/patroni.deps"
    report FAIL patroni "$WORK/patroni.deps"; return 0
  fi
  trap 'patroni_stop_all "$WORK/patroni-etcd"; patroni_stop_all "$WORK/patroni-oxcd"; cleanup' EXIT
  patroni_scenario etcd "$ETCD_BIN" $((PORT_BASE + 40)) $((PORT_BASE + 42)) $((PORT_BASE + 50)) $((PORT_BASE + 53))
  patroni_scenario oxcd "$OXCD_BIN" $((PORT_BASE + 41)) $((PORT_BASE + 43)) $((PORT_BASE + 56)) $((PORT_BASE + 59))
}
