# 3-member clusters side by side: etcd 3.4 (the reference) and oxcd. Sourced by ./run.
#
# Membership and cluster-wide commands (`member add/list/remove/promote`, `--learner`,
# `endpoint status --cluster`, `endpoint health --cluster`, `move-leader`) run against a
# 3-member etcd and a 3-member oxcd; the transcripts must be equal after the normalizations
# below (documented in DIFFERENCES.md, "3-member clusters"). Report lines: PASS cluster/<name>.
#
#   CONFORMANCE_SKIP_CLUSTER=1   skip this part
#
# Ports: etcd members m1..m4 on client $PORT_BASE+100..103, peer +110..113; oxcd members on
# client $PORT_BASE+150..153, peer +160..163. m4 is the member the scenarios add.
#
# Member ids are SHA-1 of the peer URL and the cluster token (etcd's derivation), and both
# etcd and oxcd list members sorted by id. So that the two lists come in the same order
# after normalization, each cluster gets the first token `conformance-cluster-N` under which
# m1 < m2 < m3 (cl_token). The token itself is never printed.
#
# Scenario functions are named clsc_<name> and run in file order, each first against etcd,
# then against oxcd. Helpers: ctl (against $EP: m1 unless a scenario sets it), ctl_sorted (the
# same, with stdout and stderr sorted: for output whose order depends on timing), and
# cl_ep / cl_id N (member N's client endpoint / hex id on the current cluster).

CL_LABEL=          # ref | sut: the cluster the current scenario runs against
declare -A CL_PIDS=() CL_TOKEN=()
declare -A CL_IDS=()  # "<label>/<name>" -> hex member id

cl_client_port() { # label n
  if [ "$1" = ref ]; then echo $((PORT_BASE + 99 + $2)); else echo $((PORT_BASE + 149 + $2)); fi
}
cl_peer_port() { # label n
  if [ "$1" = ref ]; then echo $((PORT_BASE + 109 + $2)); else echo $((PORT_BASE + 159 + $2)); fi
}
cl_peer_url() { echo "http://127.0.0.1:$(cl_peer_port "$1" "$2")"; }
cl_ep() { echo "127.0.0.1:$(cl_client_port "$CL_LABEL" "$1")"; }
cl_id() { echo "${CL_IDS[$CL_LABEL/m$1]:-0}"; }
cl_all_eps() { echo "$(cl_ep 1),$(cl_ep 2),$(cl_ep 3)"; }

# etcd's member id: the first 8 bytes of SHA-1 over the peer URL and the cluster token,
# as 16 hex digits (zero-padded, so that they compare as strings).
cl_member_id() { printf '%s%s' "$1" "$2" | sha1sum | cut -c1-16; }

cl_token() { # label: the first token under which m1 < m2 < m3
  local n=0 a b c
  while :; do
    n=$((n + 1))
    a=$(cl_member_id "$(cl_peer_url "$1" 1)" "conformance-cluster-$n")
    b=$(cl_member_id "$(cl_peer_url "$1" 2)" "conformance-cluster-$n")
    c=$(cl_member_id "$(cl_peer_url "$1" 3)" "conformance-cluster-$n")
    if [[ $a < $b && $b < $c ]]; then echo "conformance-cluster-$n"; return; fi
  done
}

# cl_start_member LABEL BIN N STATE INITIAL_CLUSTER
cl_start_member() {
  local label=$1 bin=$2 n=$3 state=$4 initial=$5
  local dir=$WORK/cl-$label/m$n cport pport
  cport=$(cl_client_port "$label" "$n") pport=$(cl_peer_port "$label" "$n")
  mkdir -p "$dir"
  "$bin" --name "m$n" --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$initial" --initial-cluster-state "$state" \
    --initial-cluster-token "${CL_TOKEN[$label]}" \
    </dev/null >>"$dir/server.log" 2>&1 &
  CL_PIDS[$label/m$n]=$!
}

cl_stop_member() { # label name
  local pid=${CL_PIDS[$1/$2]:-} i
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "CL_PIDS[$1/$2]"
}

cl_stop_all() {
  local k
  for k in "${!CL_PIDS[@]}"; do cl_stop_member "${k%%/*}" "${k#*/}"; done
}

# cl_start LABEL BIN: a fresh 3-member cluster; waits until every member is healthy.
cl_start() {
  local label=$1 bin=$2 n p initial=""
  for n in 1 2 3 4; do
    for p in "$(cl_client_port "$label" $n)" "$(cl_peer_port "$label" $n)"; do
      if port_busy "$p"; then log "port $p is already in use (needed by cluster $label)"; return 1; fi
    done
  done
  CL_TOKEN[$label]=$(cl_token "$label")
  for n in 1 2 3; do initial+="${initial:+,}m$n=$(cl_peer_url "$label" $n)"; done
  rm -rf "$WORK/cl-$label"
  for n in 1 2 3; do cl_start_member "$label" "$bin" $n new "$initial"; done
  local deadline=$((SECONDS + 30)) ok
  while :; do
    ok=1
    for n in 1 2 3; do
      timeout 5 etcdctl --endpoints="127.0.0.1:$(cl_client_port "$label" $n)" --dial-timeout=1s \
        --command-timeout=2s endpoint health </dev/null >/dev/null 2>&1 || { ok=0; break; }
    done
    [ $ok = 1 ] && break
    if [ $SECONDS -ge $deadline ]; then
      log "cluster $label ($bin) not healthy after 30s; logs:"
      for n in 1 2 3; do echo "--- m$n" >&2; cat "$WORK/cl-$label/m$n/server.log" >&2; done
      return 1
    fi
    sleep 0.2
  done
  # The ids, learned from the cluster itself (so a wrong derivation still shows up).
  local j
  j=$(timeout 10 etcdctl --endpoints="127.0.0.1:$(cl_client_port "$label" 1)" member list -w simple </dev/null 2>/dev/null || true)
  while IFS=', ' read -r id _ name _; do
    [[ $id =~ ^[0-9a-f]+$ ]] && CL_IDS[$label/$name]=$id
  done <<<"$j"
  j=$(timeout 10 etcdctl --endpoints="127.0.0.1:$(cl_client_port "$label" 1)" member list -w json </dev/null 2>/dev/null || true)
  CID_DEC[cl-$label]=$(grep -o '"cluster_id":[0-9]*' <<<"$j" | head -1 | cut -d: -f2 || true)
  [[ ${CID_DEC[cl-$label]} =~ ^[0-9]+$ ]] || CID_DEC[cl-$label]=
  log "cluster $label: token ${CL_TOKEN[$label]}, m1 ${CL_IDS[$label/m1]:-?} m2 ${CL_IDS[$label/m2]:-?} m3 ${CL_IDS[$label/m3]:-?}, cluster id ${CID_DEC[cl-$label]:-?}"
}

# The current leader's member number (1-3) on the current cluster, or empty.
cl_leader() {
  local n out
  for n in 1 2 3; do
    out=$(timeout 10 etcdctl --endpoints="$(cl_ep $n)" endpoint status </dev/null 2>/dev/null || true)
    # ep, id, version, db size, is leader, ...
    if [ "$(cut -d, -f5 <<<"$out" | tr -d ' ')" = true ]; then echo $n; return; fi
  done
}

# Makes member N the leader (quietly), waiting until it is.
cl_make_leader() {
  local i
  for i in $(seq 1 50); do
    [ "$(cl_leader)" = "$1" ] && return 0
    timeout 10 etcdctl --endpoints="$(cl_all_eps)" move-leader "$(cl_id "$1")" </dev/null >/dev/null 2>&1 || true
    sleep 0.2
  done
  log "cluster $CL_LABEL: m$1 did not become leader"
}

# ctl_sorted ARGS...: like ctl, with stdout and stderr lines sorted.
ctl_sorted() {
  local rc=0
  timeout 30 "$CTL_BIN" --endpoints="$EP" "$@" >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
  {
    printf '$ etcdctl'; printf ' %q' "$@"; printf ' # output sorted\n'
    sed -e '$a\' "$WORK/ctl.out" | LC_ALL=C sort
    if [ -s "$WORK/ctl.err" ]; then echo '[stderr]'; sed -e '$a\' "$WORK/ctl.err" | LC_ALL=C sort; fi
    echo "[exit $rc]"
  } >>"$OUT"
}

# Awaits (up to 20 s) member 4's applied index reaching the leader's commit index, i.e. a
# learner that has caught up and may be promoted.
cl_await_caught_up() {
  local i lead mine
  for i in $(seq 1 100); do
    lead=$(timeout 5 etcdctl --endpoints="$(cl_ep "$(cl_leader)")" endpoint status -w json </dev/null 2>/dev/null \
      | grep -o '"raftIndex":[0-9]*' | cut -d: -f2 || true)
    mine=$(timeout 5 etcdctl --endpoints="$(cl_ep 4)" endpoint status -w json </dev/null 2>/dev/null \
      | grep -o '"raftAppliedIndex":[0-9]*' | cut -d: -f2 || true)
    if [ -n "$lead" ] && [ -n "$mine" ] && [ "$mine" -ge "$lead" ]; then return 0; fi
    sleep 0.2
  done
  log "cluster $CL_LABEL: m4 did not catch up (leader index ${lead:-?}, m4 applied ${mine:-?})"
}

# normalize_cluster LABEL < raw > normalized: member ids by name (<ID_mN>), the cluster id,
# member ports by name (<CLIENT_PORT_mN>, <PEER_PORT_mN>), then the single-server rules
# (normalize), then the member order in `member add`'s ETCD_INITIAL_CLUSTER, which follows
# the ids (m4's is derived from the time).
normalize_cluster() {
  local label=$1 args=() n k hex
  for k in "${!CL_IDS[@]}"; do
    [ "${k%%/*}" = "$label" ] || continue
    hex=${CL_IDS[$k]}
    [[ $hex =~ ^[0-9a-f]+$ ]] || continue
    # (printf %u: an id above 2^63 is negative in bash arithmetic)
    args+=(-e "s/\\b${hex}\\b/<ID_${k#*/}>/g" -e "s/\\b$(printf '%u' $((16#$hex)))\\b/<ID_${k#*/}>/g")
  done
  if [ -n "${CID_DEC[cl-$label]:-}" ]; then
    hex=$(printf '%x' "${CID_DEC[cl-$label]}")
    args+=(-e "s/\\b${CID_DEC[cl-$label]}\\b/<CLUSTER_ID>/g" -e "s/\\b${hex}\\b/<CLUSTER_ID>/g")
  fi
  for n in 1 2 3 4; do
    args+=(-e "s/127\\.0\\.0\\.1:$(cl_client_port "$label" $n)\\b/127.0.0.1:<CLIENT_PORT_m$n>/g"
      -e "s/127\\.0\\.0\\.1:$(cl_peer_port "$label" $n)\\b/127.0.0.1:<PEER_PORT_m$n>/g")
  done
  args+=(
    # etcdctl prints ids with %16x: the padding depends on the id.
    -e 's/ +(<ID_m[0-9]>|<CLUSTER_ID>)/ \1/g'
    # clientv3 retries an Unavailable error until the command timeout: how often is timing.
    -e '/"msg":"retrying of unary invoker failed".*"attempt":[1-9]/d'
  )
  # (After normalize, which trims table cells: endpoint health -w table's took column.)
  sed -E "${args[@]}" | normalize "cl-$label" 0 0 \
    | sed -E 's/^(\| [^|]+ \| (true|false) \| )[0-9.]+(ns|µs|us|ms|s) \|/\1<DURATION> |/' | awk '
    /^ETCD_INITIAL_CLUSTER=/ {
      s = substr($0, 23); sub(/"$/, "", s)
      n = split(s, m, ",")
      for (i = 2; i <= n; i++) { v = m[i]; j = i - 1; while (j > 0 && m[j] > v) { m[j + 1] = m[j]; j-- } m[j + 1] = v }
      line = "ETCD_INITIAL_CLUSTER=\"" m[1]; for (i = 2; i <= n; i++) line = line "," m[i]
      print line "\""; next
    }
    # A sorted output sorts again once ids are names: m4'"'"'s random id sorts anywhere.
    function flush(   i, j, v) {
      for (i = 2; i <= nb; i++) { v = b[i]; j = i - 1; while (j > 0 && b[j] > v) { b[j + 1] = b[j]; j-- } b[j + 1] = v }
      for (i = 1; i <= nb; i++) print b[i]
      nb = 0
    }
    sorting && /^\[(stderr|exit)/ { flush(); print; if ($0 ~ /^\[exit/) sorting = 0; next }
    sorting { b[++nb] = $0; next }
    /# output sorted$/ { print; sorting = 1; nb = 0; next }
    { print }
  '
}

# ------------------------------------------------------------------ scenarios
clsc_member_list() {
  ctl member list
  ctl member list -w table
  ctl member list -w json
  EP=$(cl_ep 2) ctl member list
}

clsc_endpoint_status_cluster() {
  cl_make_leader 1
  ctl endpoint status --cluster
  ctl endpoint status --cluster -w table
  ctl endpoint status --cluster -w json
  EP=$(cl_ep 3) ctl endpoint status --cluster
}

clsc_endpoint_health_cluster() {
  ctl_sorted endpoint health --cluster
  ctl_sorted endpoint health --cluster -w table
  EP=$(cl_ep 2) ctl_sorted endpoint health --cluster
}

clsc_move_leader() {
  cl_make_leader 1
  EP=$(cl_all_eps)
  ctl move-leader "$(cl_id 2)"
  ctl endpoint status
  note "leader is now m$(cl_leader)"
  ctl move-leader "$(cl_id 2)"
  ctl move-leader 1234
  ctl move-leader zz
  ctl move-leader
  EP=$(cl_ep 1) ctl move-leader "$(cl_id 3)"
  ctl move-leader "$(cl_id 1)"
  note "leader is now m$(cl_leader)"
}

clsc_member_promote_errors() {
  cl_make_leader 1
  ctl member promote "$(cl_id 2)"
  EP=$(cl_ep 3) ctl member promote "$(cl_id 2)"
  ctl member promote 1234
  EP=$(cl_ep 3) ctl member promote 1234
  ctl member promote zz
}

clsc_member_add_learner_promote() {
  cl_make_leader 1
  local initial id
  # etcd refuses a membership change until it has been connected to every voter for 5 s
  # (its HealthInterval; "unhealthy cluster"), which it does not expose: wait that long.
  sleep 6
  ctl member add m4 --learner --peer-urls="$(cl_peer_url "$CL_LABEL" 4)"
  id=$(sed -nE 's/^Member +([0-9a-f]+) added to cluster.*/\1/p' "$WORK/ctl.out")
  if [ -n "$id" ]; then CL_IDS[$CL_LABEL/m4]=$id; fi
  ctl_sorted member list
  # (Not m4's URL again: within the same second etcd derives the same id and says so first.)
  ctl member add m5 --peer-urls="$(cl_peer_url "$CL_LABEL" 1)"
  ctl member add m5 --peer-urls=not-a-url
  note "promote the learner before it started: not in sync"
  ctl member promote "$(cl_id 4)"
  EP=$(cl_ep 2) ctl member promote "$(cl_id 4)"
  initial="m1=$(cl_peer_url "$CL_LABEL" 1),m2=$(cl_peer_url "$CL_LABEL" 2),m3=$(cl_peer_url "$CL_LABEL" 3),m4=$(cl_peer_url "$CL_LABEL" 4)"
  cl_start_member "$CL_LABEL" "$CL_BIN" 4 existing "$initial"
  cl_await_caught_up
  EP=$(cl_ep 4) ctl endpoint status
  ctl_sorted member list
  ctl_sorted endpoint status --cluster
  EP=$(cl_ep 4) ctl get foo --command-timeout=1s
  EP=$(cl_ep 4) ctl member list --command-timeout=1s
  note "promote through a follower: forwarded to the leader"
  EP=$(cl_ep 2) ctl member promote "$(cl_id 4)"
  ctl_sorted member list
  ctl member promote "$(cl_id 4)"
}

clsc_member_remove() {
  cl_make_leader 1
  ctl member remove "$(cl_id 4)"
  ctl_sorted member list
  ctl member remove "$(cl_id 4)"
  ctl member remove 1234
  ctl member remove zz
  cl_stop_member "$CL_LABEL" m4
}

run_cluster_scenarios() {
  if [ "${CONFORMANCE_SKIP_CLUSTER:-0}" = 1 ]; then log "skipping 3-member clusters (CONFORMANCE_SKIP_CLUSTER=1)"; return 0; fi
  local scenarios s any=0
  mapfile -t scenarios < <(sed -nE 's/^clsc_([A-Za-z0-9_]+)\(\).*/\1/p' "$HERE/cluster.sh")
  for s in "${scenarios[@]}"; do selected "cluster/$s" && any=1; done
  [ $any = 1 ] || return 0
  mkdir -p "$WORK/cl-t"
  local ok_ref=1 ok_sut=1
  cl_start ref "$ETCD_BIN" || ok_ref=0
  cl_start sut "$OXCD_BIN" || ok_sut=0
  if [ $ok_ref = 0 ] || [ $ok_sut = 0 ]; then
    echo "a 3-member cluster did not start (ref: $ok_ref, oxcd: $ok_sut); logs above" >"$WORK/cl-nostart"
    for s in "${scenarios[@]}"; do selected "cluster/$s" && report FAIL "cluster/$s" "$WORK/cl-nostart"; done
    cl_stop_all
    return 0
  fi
  local label
  for s in "${scenarios[@]}"; do
    selected "cluster/$s" || continue
    for label in ref sut; do
      CL_LABEL=$label
      if [ $label = ref ]; then CL_BIN=$ETCD_BIN; else CL_BIN=$OXCD_BIN; fi
      EP=$(cl_ep 1) OUT=$WORK/cl-t/$label.$s.raw
      : >"$OUT"
      "clsc_$s" </dev/null
      normalize_cluster $label <"$OUT" >"$WORK/cl-t/$label.$s.norm"
    done
    if diff -u --label "etcd/cluster/$s" --label "oxcd/cluster/$s" \
         "$WORK/cl-t/ref.$s.norm" "$WORK/cl-t/sut.$s.norm" >"$WORK/cl-$s.diff"; then
      report PASS "cluster/$s"
    else
      report FAIL "cluster/$s" "$WORK/cl-$s.diff"
    fi
  done
  cl_stop_all
}
