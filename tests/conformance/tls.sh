# TLS side by side, sourced by ./run: etcd 3.4 and oxcd each serve an https:// client URL
# with --cert-file/--key-file/--trusted-ca-file/--client-cert-auth (a PKI made here with
# openssl), and etcdctl 3.4 (then oxcdctl, when built) talks to both with --cacert, --cert,
# --key, --insecure-skip-tls-verify, no client certificate, a CA that did not sign the
# server, and http:// to the TLS port. The transcripts (stdout, etcdctl's final `Error:`
# line, exit code) must be equal; curl checks /health over mutual TLS.
#
# Ports: client $PORT_BASE+6 (etcd) and +7 (oxcd), peer $PORT_BASE+16 and +17.

TLS_REF=$((PORT_BASE + 6)) TLS_REF_PEER=$((PORT_BASE + 16))
TLS_SUT=$((PORT_BASE + 7)) TLS_SUT_PEER=$((PORT_BASE + 17))

# make_pki DIR: ca.pem, server.pem/server-key.pem (127.0.0.1, localhost), client.pem/
# client-key.pem (CN alice), other-ca.pem and other.pem/other-key.pem (another CA).
make_pki() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d" || exit 1
    for ca in ca other-ca; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$ca" -keyout "$ca-key.pem" -out "$ca.pem" 2>/dev/null
    done
    leaf() { # NAME CA CN SAN
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$3" \
        -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial \
        -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    }
    leaf server ca server "IP:127.0.0.1,DNS:localhost"
    leaf client ca alice "DNS:alice"
    leaf other other-ca mallory "DNS:mallory"
  )
}

# start_tls_server LABEL BIN CLIENT_PORT PEER_PORT: like start_server, on https://.
start_tls_server() {
  local label=$1 bin=$2 cport=$3 pport=$4 p
  for p in "$cport" "$pport"; do
    if port_busy "$p"; then log "port $p is already in use (needed by $label)"; return 1; fi
  done
  local dir=$WORK/$label
  rm -rf "$dir"; mkdir -p "$dir"
  "$bin" --name "$NODE_NAME" --data-dir "$dir/data" \
    --listen-client-urls "https://127.0.0.1:$cport" --advertise-client-urls "https://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:$pport" \
    --cert-file "$PKI/server.pem" --key-file "$PKI/server-key.pem" \
    --trusted-ca-file "$PKI/ca.pem" --client-cert-auth \
    </dev/null >"$dir/server.log" 2>&1 &
  PIDS[$label]=$!
  local deadline=$((SECONDS + 20))
  while :; do
    if ! kill -0 "${PIDS[$label]}" 2>/dev/null; then
      log "$label ($bin) exited during startup; log:"; cat "$dir/server.log" >&2
      unset "PIDS[$label]"; return 1
    fi
    if timeout 5 etcdctl --endpoints="https://127.0.0.1:$cport" --dial-timeout=1s --command-timeout=2s \
         --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client-key.pem" \
         endpoint health </dev/null >/dev/null 2>&1; then
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "$label ($bin) not healthy on https://127.0.0.1:$cport after 20s; log:"; cat "$dir/server.log" >&2
      stop_server "$label"; return 1
    fi
    sleep 0.2
  done
}

# tctl ARGS...: $TLS_CTL (etcdctl or oxcdctl) with ARGS; records the command (paths
# shortened), stdout, the final `Error:` line of stderr (etcdctl's warn lines carry Go's
# TLS wording, which is not the server's behaviour) and the exit code.
tctl() {
  local rc=0
  timeout 30 "$TLS_CTL" --dial-timeout=2s --command-timeout=3s "$@" \
    >"$WORK/tctl.out" 2>"$WORK/tctl.err" </dev/null || rc=$?
  {
    printf '$ ctl'; printf ' %q' "$@" | sed "s#$PKI/##g"; printf '\n'
    sed -e '$a\' "$WORK/tctl.out"
    grep '^Error' "$WORK/tctl.err" || true
    echo "[exit $rc]"
  } >>"$OUT"
}

sc_tls_transcript() { # PORT
  local ep=127.0.0.1:$1
  local ca=(--cacert "$PKI/ca.pem")
  local id=(--cert "$PKI/client.pem" --key "$PKI/client-key.pem")
  tctl --endpoints="https://$ep" "${ca[@]}" "${id[@]}" put tls/k v1
  tctl --endpoints="https://$ep" "${ca[@]}" "${id[@]}" get tls/k
  # A bare host:port follows the flags (TLS).
  tctl --endpoints="$ep" "${ca[@]}" "${id[@]}" get tls/k --print-value-only
  tctl --endpoints="https://$ep" "${ca[@]}" "${id[@]}" endpoint health
  # No verification of the server, still a client certificate.
  tctl --endpoints="https://$ep" --insecure-skip-tls-verify "${id[@]}" get tls/k -w json
  tctl --endpoints="https://$ep" --insecure-transport=false --insecure-skip-tls-verify \
    "${id[@]}" get tls/k --keys-only
  # Refused: no client certificate, another CA's client certificate, a CA that did not sign
  # the server, plain text to the TLS port.
  tctl --endpoints="https://$ep" "${ca[@]}" get tls/k
  tctl --endpoints="https://$ep" "${ca[@]}" --cert "$PKI/other.pem" --key "$PKI/other-key.pem" get tls/k
  tctl --endpoints="https://$ep" --cacert "$PKI/other-ca.pem" "${id[@]}" get tls/k
  tctl --endpoints="http://$ep" "${ca[@]}" "${id[@]}" get tls/k
  # Flag mistakes, before any connection.
  tctl --endpoints="https://$ep" "${ca[@]}" --cert "$PKI/client.pem" get tls/k
  tctl --endpoints="https://$ep" --cacert "$PKI/missing.pem" "${id[@]}" get tls/k
  tctl --endpoints="https://$ep" "${ca[@]}" --cert "$PKI/client.pem" --key "$PKI/other-key.pem" get tls/k
  # HTTP over the same TLS port (etcd 3.4.23 answers {"health":"true"}, oxcd adds etcd
  # 3.5's "reason"; only the verdict is compared here).
  {
    echo '$ curl /health'
    curl -s --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client-key.pem" \
      "https://$ep/health" | grep -o '"health":"true"' || true
    echo '$ curl /health (no client certificate)'
    local rc=0
    curl -s --cacert "$PKI/ca.pem" "https://$ep/health" >/dev/null 2>&1 || rc=$?
    if [ $rc = 0 ]; then echo "[answered]"; else echo "[refused]"; fi
  } >>"$OUT"
}

# tls_pass NAME CTL LABEL PORT PEER: the transcript of CTL against one server, normalized.
tls_pass() {
  local name=$1 ctl=$2 label=$3 port=$4 peer=$5 side=$6
  TLS_CTL=$ctl OUT=$WORK/$side/t/$name.raw
  : >"$OUT"
  sc_tls_transcript "$port"
  normalize "$label" "$port" "$peer" <"$OUT" >"$WORK/$side/t/$name.norm"
}

# For oxcdctl against etcdctl on the same server: a second pass sees other revisions, and
# oxcdctl names the cause where etcdctl 3.4 says "context deadline exceeded" (see
# DIFFERENCES.md), so both are folded.
fold_connection_errors() {
  sed -E -e 's/"(revision|mod_revision|version)":[0-9]+/"\1":<N>/g' \
    -e 's/^Error: (context deadline exceeded|TLS handshake with .*|cannot reach .*)$/Error: <CONNECTION FAILURE>/'
}

run_tls_scenarios() {
  selected tls_etcdctl || selected tls_oxcdctl || selected tls_python_etcd3 || selected tls_go_clientv3 || return 0
  PKI=$WORK/pki
  make_pki "$PKI"
  if ! start_tls_server tls-ref "$ETCD_BIN" $TLS_REF $TLS_REF_PEER; then
    log "reference etcd with TLS did not start"; return 0
  fi
  if ! start_tls_server tls-sut "$OXCD_BIN" $TLS_SUT $TLS_SUT_PEER; then
    echo "oxcd with TLS did not start; its log is printed above" >"$WORK/tls-nostart"
    report FAIL tls_etcdctl "$WORK/tls-nostart"; stop_server tls-ref; return 0
  fi
  ETCDCTL_CACERT=$PKI/ca.pem ETCDCTL_CERT=$PKI/client.pem ETCDCTL_KEY=$PKI/client-key.pem learn_ids tls-ref $TLS_REF
  ETCDCTL_CACERT=$PKI/ca.pem ETCDCTL_CERT=$PKI/client.pem ETCDCTL_KEY=$PKI/client-key.pem learn_ids tls-sut $TLS_SUT
  mkdir -p "$WORK/ref/t" "$WORK/sut/t"
  local name=tls_etcdctl
  if selected $name; then
    # The server: etcdctl 3.4 against etcd, then against oxcd.
    tls_pass $name etcdctl tls-ref $TLS_REF $TLS_REF_PEER ref
    tls_pass $name etcdctl tls-sut $TLS_SUT $TLS_SUT_PEER sut
    if diff -u --label "etcd/$name" --label "oxcd/$name" "$WORK/ref/t/$name.norm" "$WORK/sut/t/$name.norm" >"$WORK/$name.diff"; then
      report PASS "$name"
    else
      report FAIL "$name" "$WORK/$name.diff"
    fi
  fi
  name=tls_oxcdctl
  local ctl=${OXCDCTL_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/oxcdctl}
  if selected $name && [ -x "$ctl" ]; then
    # The CLI: etcdctl 3.4 and oxcdctl, each against etcd and against oxcd.
    local kind label port peer ok=1
    : >"$WORK/$name.diff"
    for kind in ref sut; do
      if [ $kind = ref ]; then label=tls-ref port=$TLS_REF peer=$TLS_REF_PEER
      else label=tls-sut port=$TLS_SUT peer=$TLS_SUT_PEER; fi
      tls_pass "$name-etcdctl" etcdctl $label $port $peer $kind
      tls_pass "$name-oxcdctl" "$ctl" $label $port $peer $kind
      fold_connection_errors <"$WORK/$kind/t/$name-etcdctl.norm" >"$WORK/$kind/t/$name-etcdctl.fold"
      fold_connection_errors <"$WORK/$kind/t/$name-oxcdctl.norm" >"$WORK/$kind/t/$name-oxcdctl.fold"
      diff -u --label "etcdctl@$label" --label "oxcdctl@$label" \
        "$WORK/$kind/t/$name-etcdctl.fold" "$WORK/$kind/t/$name-oxcdctl.fold" >>"$WORK/$name.diff" || ok=0
    done
    if [ $ok = 1 ]; then report PASS "$name"; else report FAIL "$name" "$WORK/$name.diff"; fi
  elif selected $name; then
    log "skipping $name: no oxcdctl at $ctl (set OXCDCTL_BIN)"
  fi
  name=tls_python_etcd3
  local py=${CONFORMANCE_CACHE:-$HOME/.cache/oxcd-conformance}/venv/bin/python
  if selected $name && [ -x "$py" ]; then
    timeout 60 "$py" "$HERE/clients/python/tls.py" 127.0.0.1 $TLS_REF "$PKI" >"$WORK/ref/t/$name.norm" 2>"$WORK/ref/t/$name.err" || true
    timeout 60 "$py" "$HERE/clients/python/tls.py" 127.0.0.1 $TLS_SUT "$PKI" >"$WORK/sut/t/$name.norm" 2>"$WORK/sut/t/$name.err" || true
    if diff -u --label "etcd/$name" --label "oxcd/$name" "$WORK/ref/t/$name.norm" "$WORK/sut/t/$name.norm" >"$WORK/$name.diff"; then
      report PASS "$name"
    else
      report FAIL "$name" "$WORK/$name.diff"
    fi
  elif selected $name; then
    log "skipping $name: no python-etcd3 venv at $py (run the client suites once)"
  fi
  name=tls_go_clientv3
  if selected $name && [ "${CONFORMANCE_SKIP_GO:-0}" != 1 ]; then
    local bin
    if bin=$(build_go tls_clientv3); then
      timeout 60 "$bin" 127.0.0.1:$TLS_REF "$PKI" >"$WORK/ref/t/$name.norm" 2>"$WORK/ref/t/$name.err" || true
      timeout 60 "$bin" 127.0.0.1:$TLS_SUT "$PKI" >"$WORK/sut/t/$name.norm" 2>"$WORK/sut/t/$name.err" || true
      if diff -u --label "etcd/$name" --label "oxcd/$name" "$WORK/ref/t/$name.norm" "$WORK/sut/t/$name.norm" >"$WORK/$name.diff"; then
        report PASS "$name"
      else
        report FAIL "$name" "$WORK/$name.diff"
      fi
    else
      echo "cannot build go/tls_clientv3" >"$WORK/$name.diff"; report FAIL "$name" "$WORK/$name.diff"
    fi
  fi
  stop_server tls-ref
  stop_server tls-sut
}
