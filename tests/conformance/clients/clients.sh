# Per-client conformance suites, sourced by ../run (after the etcdctl and Go scenarios).
#
# Each client suite is a program that takes `--list` (scenario names, one a line) or
# `HOST:PORT SCENARIO` (prints that scenario's transcript). For every scenario the program
# runs against etcd and then against oxcd; both transcripts go through run's normalize()
# and are diffed. A transcript whose last line starts with `UNIMPLEMENTED` (the program saw
# gRPC Unimplemented) is "not yet supported" -- allowed only for oxcd, and only if
# everything before that line matches etcd's transcript. See README.md.
#
# Installs are idempotent and cached under $CACHE (CONFORMANCE_CACHE):
#   python-etcd3      venv from clients/python/requirements.txt (PyPI)
#   node-etcd3        `npm ci` of clients/node/package-lock.json (npm)
#   rust-etcd-client  `cargo build --release --locked` of clients/rust (crates.io; needs protoc)
# CONFORMANCE_SKIP_CLIENTS=1 skips all of them; CONFORMANCE_CLIENTS='python|rust' (regex on
# the client name) runs a subset. CONFORMANCE_ONLY also applies, to `client/scenario`.

CLIENTS_DIR=$HERE/clients
# Own ports (not run's 23790/23791), so a slow socket release after the etcdctl
# scenarios cannot collide.
C_REF=$((PORT_BASE + 2)) C_REF_PEER=$((PORT_BASE + 12)) C_SUT=$((PORT_BASE + 3)) C_SUT_PEER=$((PORT_BASE + 13))
# Scenarios named tls_*: against etcd and oxcd on https:// with --client-cert-auth
# (tls.sh's start_tls_server and make_pki), on ports of their own.
C_TLS_REF=$((PORT_BASE + 8)) C_TLS_REF_PEER=$((PORT_BASE + 18)) C_TLS_SUT=$((PORT_BASE + 9)) C_TLS_SUT_PEER=$((PORT_BASE + 19))
CLIENT_TLS_STATE=
CLIENT_NAMES=(python-etcd3 python-etcd3gw node-etcd3 rust-etcd-client)
declare -A CLIENT_CMD=() RESULT=()
NYS=0 NYS_NAMES=()

# ------------------------------------------------------------------ installs
apt_install() { # packages...
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 update -qq >&2
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$@" >/dev/null
}

setup_python-etcd3() {
  local req=$CLIENTS_DIR/python/requirements.txt venv=$CACHE/venv key
  key=$( { cat "$req"; python3 --version; } | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.conformance-key" 2>/dev/null)" != "$key" ]; then
    log "python-etcd3: creating $venv (pip install -r $req)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 || return 1
    echo "$key" >"$venv/.conformance-key"
  fi
  CLIENT_CMD[python-etcd3]="$venv/bin/python $CLIENTS_DIR/python/suite.py"
}

setup_python-etcd3gw() {
  local req=$CLIENTS_DIR/etcd3gw/requirements.txt venv=$CACHE/venv-etcd3gw key
  key=$( { cat "$req"; python3 --version; } | sha256sum | cut -c1-16)
  if [ "$(cat "$venv/.conformance-key" 2>/dev/null)" != "$key" ]; then
    log "python-etcd3gw: creating $venv (pip install -r $req)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 || return 1
    echo "$key" >"$venv/.conformance-key"
  fi
  CLIENT_CMD[python-etcd3gw]="$venv/bin/python $CLIENTS_DIR/etcd3gw/suite.py"
}

setup_node-etcd3() {
  local src=$CLIENTS_DIR/node dir key
  key=$( { cat "$src/package-lock.json"; node --version; } | sha256sum | cut -c1-16)
  dir=$CACHE/node-$key
  if [ ! -f "$dir/.conformance-ok" ]; then
    log "node-etcd3: npm ci into $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error --cache "$CACHE/npm-cache") >&2 || return 1
    touch "$dir/.conformance-ok"
  fi
  CLIENT_CMD[node-etcd3]="env NODE_PATH=$dir/node_modules node $src/suite.js"
}

setup_rust-etcd-client() {
  local src=$CLIENTS_DIR/rust target=$CACHE/rust-target
  if ! command -v protoc >/dev/null 2>&1; then
    log "rust-etcd-client: protoc missing -> apt-get install protobuf-compiler"
    apt_install protobuf-compiler || return 1
  fi
  # cargo is incremental: a no-op when nothing changed.
  log "rust-etcd-client: cargo build --release --locked (target $target)"
  (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release --locked --quiet) >&2 || return 1
  CLIENT_CMD[rust-etcd-client]="$target/release/oxcd-conformance-rust"
}

# ----------------------------------------------------------------- scenarios
# Both servers get exactly the same writes while everything passes. A scenario that
# stops early on oxcd (Unimplemented, or a failure) leaves it behind etcd; before each
# scenario the lagging server gets dummy puts to key `conformance-pad` until both are at
# the same revision, so later scenarios still compare revisions verbatim.
align_revisions() {
  local r1 r2 ep n
  r1=$(EP=127.0.0.1:$C_REF rev); r2=$(EP=127.0.0.1:$C_SUT rev)
  [[ $r1 =~ ^[0-9]+$ && $r2 =~ ^[0-9]+$ ]] || return 0
  [ "$r1" = "$r2" ] && return 0
  if [ "$r1" -lt "$r2" ]; then ep=127.0.0.1:$C_REF n=$((r2 - r1)); else ep=127.0.0.1:$C_SUT n=$((r1 - r2)); fi
  log "padding $ep with $n put(s) to align revisions ($r1 vs $r2)"
  local i
  for ((i = 0; i < n; i++)); do EP=$ep quiet put conformance-pad x; done
}

# client_tls_servers: the TLS pair for tls_* scenarios, started on first use; the client
# programs find the PKI (ca.pem, client.pem/client-key.pem, other-ca.pem, other.pem/
# other-key.pem) in CONFORMANCE_PKI.
client_tls_servers() {
  case $CLIENT_TLS_STATE in up) return 0 ;; failed) return 1 ;; esac
  CLIENT_TLS_STATE=failed
  PKI=$WORK/pki
  [ -s "$PKI/server.pem" ] || make_pki "$PKI"
  start_tls_server ctls-ref "$ETCD_BIN" $C_TLS_REF $C_TLS_REF_PEER || return 1
  start_tls_server ctls-sut "$OXCD_BIN" $C_TLS_SUT $C_TLS_SUT_PEER || { stop_server ctls-ref; return 1; }
  ETCDCTL_CACERT=$PKI/ca.pem ETCDCTL_CERT=$PKI/client.pem ETCDCTL_KEY=$PKI/client-key.pem learn_ids ctls-ref $C_TLS_REF
  ETCDCTL_CACERT=$PKI/ca.pem ETCDCTL_CERT=$PKI/client.pem ETCDCTL_KEY=$PKI/client-key.pem learn_ids ctls-sut $C_TLS_SUT
  export CONFORMANCE_PKI=$PKI
  CLIENT_TLS_STATE=up
}

client_transcript() { # label port client scenario > raw
  local rc=0
  # shellcheck disable=SC2086 # CLIENT_CMD is a command line
  timeout 60 ${CLIENT_CMD[$3]} "127.0.0.1:$2" "$4" </dev/null 2>"$WORK/client.err" || rc=$?
  if [ $rc != 0 ]; then echo "[exit $rc]"; sed 's/^/[stderr] /' "$WORK/client.err"; fi
}

run_client_scenario() { # client scenario
  local c=$1 s=$2 name="$1/$2" d=$WORK/clients/$1
  local ref=cref ref_port=$C_REF ref_peer=$C_REF_PEER sut=csut sut_port=$C_SUT sut_peer=$C_SUT_PEER
  if [[ $s == tls_* ]]; then
    if ! client_tls_servers; then
      echo "etcd and oxcd with TLS did not both start (log above)" >"$d/$s.diff"
      RESULT[$c|$s]=FAIL; report FAIL "$name" "$d/$s.diff"; return
    fi
    ref=ctls-ref ref_port=$C_TLS_REF ref_peer=$C_TLS_REF_PEER sut=ctls-sut sut_port=$C_TLS_SUT sut_peer=$C_TLS_SUT_PEER
  else
    align_revisions
  fi
  client_transcript ref "$ref_port" "$c" "$s" >"$d/$s.ref.raw"
  client_transcript sut "$sut_port" "$c" "$s" >"$d/$s.sut.raw"
  normalize "$ref" "$ref_port" "$ref_peer" <"$d/$s.ref.raw" >"$d/$s.ref"
  normalize "$sut" "$sut_port" "$sut_peer" <"$d/$s.sut.raw" >"$d/$s.sut"
  if grep -q '^UNIMPLEMENTED' "$d/$s.ref"; then
    { echo "etcd itself answered Unimplemented:"; sed 's/^/  /' "$d/$s.ref"; } >"$d/$s.diff"
    RESULT[$c|$s]=FAIL; report FAIL "$name" "$d/$s.diff"; return
  fi
  local last
  last=$(tail -n 1 "$d/$s.sut")
  if [[ $last == UNIMPLEMENTED* ]]; then
    # Everything oxcd answered before the Unimplemented must match etcd.
    local n
    n=$(($(wc -l <"$d/$s.sut") - 1))
    head -n "$n" "$d/$s.sut" >"$d/$s.sut.head"
    head -n "$n" "$d/$s.ref" >"$d/$s.ref.head"
    if diff -u --label "etcd/$name" --label "oxcd/$name" "$d/$s.ref.head" "$d/$s.sut.head" >"$d/$s.diff"; then
      RESULT[$c|$s]=NYS
      NYS=$((NYS + 1)); NYS_NAMES+=("$name")
      echo "NOT-YET-SUPPORTED $name (${last#UNIMPLEMENTED })"
    else
      RESULT[$c|$s]=FAIL; report FAIL "$name" "$d/$s.diff"
    fi
    return
  fi
  if diff -u --label "etcd/$name" --label "oxcd/$name" "$d/$s.ref" "$d/$s.sut" >"$d/$s.diff"; then
    RESULT[$c|$s]=PASS; report PASS "$name"
  else
    RESULT[$c|$s]=FAIL; report FAIL "$name" "$d/$s.diff"
  fi
}

# ------------------------------------------------------------------ RESULTS.md
results_cell() { case $1 in PASS) echo PASS ;; FAIL) echo '**FAIL**' ;; NYS) echo 'not yet supported' ;; *) echo '·' ;; esac; }

write_results() { # file
  local f=$1 s c row
  local -a cols=(etcdctl go-clientv3 "${CLIENT_NAMES[@]}") rows=()
  declare -A seen=()
  for s in "${SCENARIOS[@]}"; do RESULT[etcdctl|$s]=$(if [[ " ${FAILED_NAMES[*]} " == *" $s "* ]]; then echo FAIL; else echo PASS; fi); done
  RESULT[go-clientv3|tutorial_put_get]=$(if [[ " ${FAILED_NAMES[*]} " == *" go_tutorial_put_get "* ]]; then echo FAIL; else echo PASS; fi)
  for s in "${SCENARIOS[@]}" tutorial_put_get; do seen[$s]=1; rows+=("$s"); done
  for c in "${CLIENT_NAMES[@]}"; do
    for s in ${CLIENT_SCENARIOS[$c]:-}; do [ -n "${seen[$s]:-}" ] || { seen[$s]=1; rows+=("$s"); }; done
  done
  {
    echo "# Conformance results"
    echo
    echo "Generated by \`tests/conformance/run\` on $(date -u +%Y-%m-%d) -- do not edit by hand."
    echo "Reference: $("$ETCD_BIN" --version 2>/dev/null | head -1). Under test: $("$OXCD_BIN" --version 2>/dev/null | head -1)."
    echo
    echo "PASS: oxcd's transcript equals etcd's (after the normalizations in DIFFERENCES.md)."
    echo "not yet supported: oxcd answered gRPC Unimplemented, and matched etcd up to that call."
    echo "·: the client has no such scenario. \`run\` fails if a PASS below becomes anything else."
    echo
    row="| scenario |"; for c in "${cols[@]}"; do row+=" $c |"; done; echo "$row"
    row="| --- |"; for c in "${cols[@]}"; do row+=" --- |"; done; echo "$row"
    for s in "${rows[@]}"; do
      row="| $s |"; for c in "${cols[@]}"; do row+=" $(results_cell "${RESULT[$c|$s]:-}") |"; done; echo "$row"
    done
  } >"$f"
}

# A scenario that is PASS in the committed RESULTS.md must still pass.
check_regressions() { # old-results-file
  local old=$1 line c s i
  [ -f "$old" ] || return 0
  local -a cols=()
  while IFS= read -r line; do
    [[ $line == '| '* ]] || continue
    IFS='|' read -ra cells <<<"$line"
    for i in "${!cells[@]}"; do cells[$i]=$(echo "${cells[$i]}" | sed 's/^ *//; s/ *$//'); done
    if [ "${cells[1]}" = scenario ]; then cols=("${cells[@]:2}"); continue; fi
    [ "${cells[1]}" = --- ] && continue
    s=${cells[1]}
    for i in "${!cols[@]}"; do
      c=${cols[$i]}
      [ "${cells[$((i + 2))]}" = PASS ] || continue
      case ${RESULT[$c|$s]:-} in
        NYS) echo "$c/$s passed before (RESULTS.md) and is now 'not yet supported'" >"$WORK/regression"
             report FAIL "regression:$c/$s" "$WORK/regression" ;;
      esac
    done
  done <"$old"
}

run_client_suites() {
  if [ "${CONFORMANCE_SKIP_CLIENTS:-0}" = 1 ]; then log "skipping client suites (CONFORMANCE_SKIP_CLIENTS=1)"; return 0; fi
  declare -gA CLIENT_SCENARIOS=()
  local c s t0
  local -a active=()
  for c in "${CLIENT_NAMES[@]}"; do
    [[ $c =~ ${CONFORMANCE_CLIENTS:-.} ]] || continue
    t0=$SECONDS
    if "setup_$c"; then
      active+=("$c"); log "$c: ready in $((SECONDS - t0))s"
      CLIENT_SCENARIOS[$c]=$(${CLIENT_CMD[$c]} --list | tr '\n' ' ')
    else
      echo "installing/building $c failed (see the log above)" >"$WORK/setup.$c"
      report FAIL "$c/setup" "$WORK/setup.$c"
    fi
  done
  if [ ${#active[@]} -gt 0 ]; then
    start_server cref "$ETCD_BIN" $C_REF $C_REF_PEER || die "reference etcd did not start"
    if ! start_server csut "$OXCD_BIN" $C_SUT $C_SUT_PEER; then
      echo "server under test did not start" >"$WORK/nostart"
      for c in "${active[@]}"; do report FAIL "$c" "$WORK/nostart"; done
      stop_server cref; return 0
    fi
    learn_ids cref $C_REF
    learn_ids csut $C_SUT
    for c in "${active[@]}"; do
      mkdir -p "$WORK/clients/$c"
      t0=$SECONDS
      for s in ${CLIENT_SCENARIOS[$c]}; do
        selected "$c/$s" || continue
        run_client_scenario "$c" "$s"
      done
      log "$c: scenarios took $((SECONDS - t0))s"
    done
    stop_server cref; stop_server csut; stop_server ctls-ref; stop_server ctls-sut
  fi

  # RESULTS.md: only from a complete run against something other than etcd itself.
  local results=${CONFORMANCE_RESULTS:-$HERE/RESULTS.md}
  check_regressions "$results"
  if [ -n "$ONLY" ] || [ "${CONFORMANCE_SKIP_GO:-0}" = 1 ] || [ -n "${CONFORMANCE_CLIENTS:-}" ] \
     || "$OXCD_BIN" --version 2>/dev/null | grep -q '^etcd Version'; then
    write_results "$WORK/RESULTS.md"
    log "partial run or self-check: results table in $WORK/RESULTS.md (not written to $results)"
    if [ "${CONFORMANCE_KEEP:-0}" != 1 ]; then sed -n '/^| scenario/,$p' "$WORK/RESULTS.md" >&2; fi
  else
    write_results "$results"
    log "wrote $results"
  fi
  if [ $NYS -gt 0 ]; then log "not yet supported (oxcd answered Unimplemented): ${NYS_NAMES[*]}"; fi
}
