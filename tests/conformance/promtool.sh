# Prometheus checks with Debian's promtool, sourced by ./run.
#
#   promtool_check_metrics     oxcd's /metrics parses (`promtool check metrics` exits 0, or
#                              3 for lint findings only), and every lint finding is one
#                              etcd 3.4's own /metrics has too: names and types are etcd's,
#                              and etcd keeps some `_total` gauges (proposals_committed_total
#                              ...) that promtool's linter frowns upon
#   promtool_rules_<store>     etcd's alert rules (promtool/etcd-alerts.yml) under a scripted
#                              fault on a 3-member cluster: scrapes of every member each
#                              PROMTOOL_SCRAPE_EVERY s while healthy, then two members are
#                              killed and the survivor scraped until it reports no leader and
#                              PROMTOOL_FAULT_ROUNDS rounds more; promtool/scrapes_to_test.py
#                              turns the scrapes (one a virtual minute) into a `promtool test
#                              rules` file: no alert before, etcdNoLeader for the survivor
#                              and etcdInsufficientMembers after. Against etcd 3.4 and oxcd.
#
# CONFORMANCE_SKIP_PROMTOOL=1 skips it. Ports: a single member on PORT_BASE+62 (peer +63);
# the 3-member cluster's clients PORT_BASE+70..72, peers +73..75.

PROMTOOL_DIR=$HERE/promtool
PROMTOOL_SCRAPE_EVERY=0.5
PROMTOOL_HEALTHY_ROUNDS=3
PROMTOOL_FAULT_ROUNDS=5
PROMTOOL_PY=$(command -v /usr/bin/python3 || command -v python3 || echo python3)

promtool_deps() {
  command -v promtool >/dev/null 2>&1 && return 0
  log "promtool: installing prometheus (apt-get, for promtool)"
  apt_install prometheus || return 1
  # The package's service is not needed (and stays stopped where policy-rc.d says so).
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
  command -v promtool >/dev/null 2>&1
}

# promtool_lint FILE: promtool's findings for FILE, one "name finding" a line, sorted; fails
# when promtool cannot parse it (exit status other than 0 and 3).
promtool_lint() {
  local rc=0
  promtool check metrics <"$1" >"$1.lint" 2>&1 || rc=$?
  if [ $rc != 0 ] && [ $rc != 3 ]; then cat "$1.lint"; return 1; fi
  sort -u "$1.lint"
}

promtool_check_metrics() {
  local details=$WORK/promtool-metrics.details label bin port
  : >"$details"
  for label in etcd oxcd; do
    if [ $label = etcd ]; then bin=$ETCD_BIN; else bin=$OXCD_BIN; fi
    port=$((PORT_BASE + 62))
    if ! start_server "prom-$label" "$bin" $port $((PORT_BASE + 63)); then
      echo "$label did not start" >>"$details"; report FAIL promtool_check_metrics "$details"; return 0
    fi
    # Some traffic first, so request-driven series have samples.
    timeout 10 etcdctl --endpoints=127.0.0.1:$port put promtool-key v </dev/null >/dev/null 2>&1 || true
    timeout 10 etcdctl --endpoints=127.0.0.1:$port get promtool-key </dev/null >/dev/null 2>&1 || true
    curl -s -m 10 "http://127.0.0.1:$port/metrics" >"$WORK/metrics.$label.prom" || true
    stop_server "prom-$label"
  done
  local ok=1
  if ! promtool_lint "$WORK/metrics.etcd.prom" >"$WORK/lint.etcd"; then
    ok=0; { echo "promtool cannot parse etcd 3.4's /metrics:"; cat "$WORK/lint.etcd"; } >>"$details"
  fi
  if ! promtool_lint "$WORK/metrics.oxcd.prom" >"$WORK/lint.oxcd"; then
    ok=0; { echo "promtool cannot parse oxcd's /metrics:"; cat "$WORK/lint.oxcd"; } >>"$details"
  elif [ ! -s "$WORK/metrics.oxcd.prom" ]; then
    ok=0; echo "oxcd's /metrics is empty" >>"$details"
  fi
  local extra
  extra=$(comm -23 "$WORK/lint.oxcd" "$WORK/lint.etcd")
  if [ -n "$extra" ]; then
    ok=0; { echo "lint findings etcd 3.4 does not have:"; echo "$extra"; } >>"$details"
  fi
  if [ $ok = 1 ]; then
    log "promtool: oxcd's /metrics parses; its $(wc -l <"$WORK/lint.oxcd") lint findings are all etcd 3.4's too ($(wc -l <"$WORK/lint.etcd") there)"
    report PASS promtool_check_metrics
  else
    report FAIL promtool_check_metrics "$details"
  fi
}

# promtool_rules LABEL BIN: the no-leader fault on a 3-member cluster of BIN.
promtool_rules() {
  local label=$1 bin=$2 name=promtool_rules_$1
  local details=$WORK/$name.details dir=$WORK/$name scrapes i cluster="" pids=() insts=()
  : >"$details"
  mkdir -p "$dir"
  scrapes=$dir/scrapes
  mkdir -p "$scrapes"
  for i in 0 1 2; do
    cluster+="${cluster:+,}p$i=http://127.0.0.1:$((PORT_BASE + 73 + i))"
    insts+=("127.0.0.1:$((PORT_BASE + 70 + i))")
  done
  for i in 0 1 2; do
    "$bin" --name "p$i" --data-dir "$dir/p$i" \
      --listen-client-urls "http://127.0.0.1:$((PORT_BASE + 70 + i))" \
      --advertise-client-urls "http://127.0.0.1:$((PORT_BASE + 70 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((PORT_BASE + 73 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((PORT_BASE + 73 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      </dev/null >"$dir/p$i.log" 2>&1 &
    pids+=("$!")
    PIDS[$name-p$i]=$!
  done
  local eps deadline=$((SECONDS + 30))
  eps=$(IFS=,; echo "${insts[*]}")
  until timeout 5 etcdctl --endpoints="$eps" --dial-timeout=1s --command-timeout=2s endpoint health \
          </dev/null >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      { echo "$label: the 3-member cluster did not become healthy within 30 s"; tail -n 5 "$dir"/p*.log; } >>"$details"
      for i in 0 1 2; do stop_server "$name-p$i"; done
      report FAIL "$name" "$details"; return 0
    fi
    sleep 0.3
  done
  timeout 10 etcdctl --endpoints="${insts[0]}" put promtool-key v </dev/null >/dev/null 2>&1 || true
  local round=0 k
  scrape_round() {
    for k in 0 1 2; do
      curl -s -m 2 "http://${insts[$k]}/metrics" >"$scrapes/$round.${insts[$k]}.prom" 2>/dev/null || true
    done
    round=$((round + 1))
  }
  for i in $(seq 1 $PROMTOOL_HEALTHY_ROUNDS); do scrape_round; sleep "$PROMTOOL_SCRAPE_EVERY"; done
  # The fault: p1 and p2 killed, p0 alone without a quorum.
  local fault=$round survivor=${insts[0]}
  stop_server "$name-p1"
  stop_server "$name-p2"
  deadline=$((SECONDS + 30))
  local zero=""
  while [ $SECONDS -lt $deadline ]; do
    scrape_round
    if grep -qx 'etcd_server_has_leader 0' "$scrapes/$((round - 1)).$survivor.prom" 2>/dev/null; then zero=$round; break; fi
    sleep "$PROMTOOL_SCRAPE_EVERY"
  done
  for i in $(seq 1 $PROMTOOL_FAULT_ROUNDS); do sleep "$PROMTOOL_SCRAPE_EVERY"; scrape_round; done
  stop_server "$name-p0"
  if [ -z "$zero" ]; then
    echo "$label: the survivor never reported etcd_server_has_leader 0 within 30 s" >>"$details"
  fi
  "$PROMTOOL_PY" "$PROMTOOL_DIR/scrapes_to_test.py" "$PROMTOOL_DIR/etcd-alerts.yml" "$scrapes" \
    "$round" "$fault" "$survivor" "${insts[@]}" >"$dir/test.yml" 2>>"$details" || true
  if [ -n "$zero" ] && promtool test rules "$dir/test.yml" >"$dir/promtool.out" 2>&1; then
    log "promtool/$label: $round scrapes, fault at $fault, no leader from $((zero - 1)): etcd's rules fire as expected"
    report PASS "$name"
  else
    { cat "$dir/promtool.out" 2>/dev/null; echo "--- test file: $dir/test.yml (CONFORMANCE_KEEP=1 keeps it)"; } >>"$details"
    report FAIL "$name" "$details"
  fi
}

run_promtool() {
  if [ "${CONFORMANCE_SKIP_PROMTOOL:-0}" = 1 ]; then log "skipping promtool (CONFORMANCE_SKIP_PROMTOOL=1)"; return 0; fi
  selected promtool || return 0
  if ! promtool_deps; then
    echo "could not install promtool (Debian's prometheus package)" >"$WORK/promtool.deps"
    report FAIL promtool "$WORK/promtool.deps"; return 0
  fi
  promtool_check_metrics
  promtool_rules etcd "$ETCD_BIN"
  promtool_rules oxcd "$OXCD_BIN"
}
