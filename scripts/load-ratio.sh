#!/usr/bin/env bash
# One throughput figure with its ceiling: runs `posgate load --ceiling` against
# a `posgate serve` on the example config (or INSTANCES of them on one
# PostgreSQL database), and prints one line:
#
#   workload backend req/s ratio p50 p99
#
# where ratio = the gateway's req/s / a no-op gRPC server's req/s (same TLS and
# mutual TLS, same client, same load, same run). With INSTANCES > 1 the backend
# reads e.g. `postgres/2` and the ceiling is still one no-op server.
#
# Usage: scripts/load-ratio.sh [sqlite|postgres]
#
# Environment (defaults in brackets):
#   POSGATE       the posgate binary [$CARGO_TARGET_DIR/release/posgate, else target/release/posgate]
#   SERVE         the binary that runs `posgate serve` [$POSGATE], e.g. an older build measured
#                 with the current load client (its config schema must match the example's:
#                 see CONFIG_DIR)
#   CONFIG_DIR    where the example configs are [config/ of this checkout]; for an older
#                 SERVE whose config schema differs, that version's config/ (e.g.
#                 `git archive REV config | tar -x -C DIR`, then CONFIG_DIR=DIR/config)
#   PG_URL        PostgreSQL server for `postgres` [$POSGATE_TEST_PG_URL]; the run uses a
#                 fresh schema in it, dropped afterwards
#   MIX           scenario weights [pay=100]; a mix with `card` also starts the bank simulator
#                 (always started: the example config has bank links); a mix with `topup` or
#                 `wallet` also starts the wallet simulator, with a [[wallet_operator]] towards
#                 it and the load's wallet (--wallet-card default) holding far more than a run moves
#   RETRY_SHARE   [0]    CONCURRENCY [64]    DURATION_S [20]
#   INSTANCES     `posgate serve` processes on the one database [1]; above 1, postgres only.
#                 Each listens on its own port with the same config otherwise; the load's
#                 terminals spread over them (terminal i to instance i mod INSTANCES)
#   WRITERS       PostgreSQL writer tasks per instance (`database.writers`) [the example's 4]
#   JSON_OUT      also write the full JSON summary to this file
#   KEEP_WORK=1   keep the temporary directory (config, database, logs)
#
# Build first: CARGO_TARGET_DIR=/work/tgt-x cargo build --release -p posgate --bin posgate
set -euo pipefail

backend=${1:-sqlite}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${POSGATE:-${CARGO_TARGET_DIR:-$repo/target}/release/posgate}
serve_bin=${SERVE:-$bin}
config_dir=$(cd "${CONFIG_DIR:-$repo/config}" && pwd)
mix=${MIX:-pay=100}
retry_share=${RETRY_SHARE:-0}
concurrency=${CONCURRENCY:-64}
duration_s=${DURATION_S:-20}
instances=${INSTANCES:-1}

[[ -x $bin ]] || { echo "no posgate binary at $bin (set POSGATE or build --release)" >&2; exit 2; }
[[ -x $serve_bin ]] || { echo "no posgate binary at $serve_bin (SERVE)" >&2; exit 2; }
case $backend in
  sqlite | postgres) ;;
  *) echo "usage: $0 [sqlite|postgres]" >&2; exit 2 ;;
esac
[[ $instances =~ ^[1-9][0-9]*$ ]] || { echo "INSTANCES must be a positive number" >&2; exit 2; }
if ((instances > 1)) && [[ $backend != postgres ]]; then
  echo "INSTANCES > 1 needs postgres: several processes share one PostgreSQL database" >&2
  exit 2
fi
wallets=0
[[ $mix == *topup* || $mix == *wallet* ]] && wallets=1

work=$(mktemp -d -t posgate-load-ratio.XXXXXX)
server_pids=""
bank_pid=""
wallet_pid=""
pg_schema=""
cleanup() {
  local status=$?
  for pid in $server_pids $bank_pid $wallet_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $server_pids $bank_pid $wallet_pid; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $pg_schema ]]; then
    psql -q "$pg_base" -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" >/dev/null 2>&1 || true
  fi
  if [[ ${KEEP_WORK:-0} == 1 || $status != 0 ]]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# Free loopback ports for the bank and wallet simulators and the gateways, so
# the script runs beside other gateways on the example's ports.
read -r bank_port wallet_port gateway_ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(2 + int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$instances")
read -r -a gateway_ports <<<"$gateway_ports"
gateway_port=${gateway_ports[0]}

case $backend in
  sqlite) db_url="sqlite://$work/posgate.db" ;;
  postgres)
    pg_base=${PG_URL:-${POSGATE_TEST_PG_URL:?set PG_URL or POSGATE_TEST_PG_URL for postgres}}
    pg_schema="load_ratio_$(date +%s)_$$"
    psql -q "$pg_base" -c "CREATE SCHEMA $pg_schema" >/dev/null
    separator='?'
    [[ $pg_base == *\?* ]] && separator='&'
    db_url="${pg_base}${separator}options=-c%20search_path%3D${pg_schema}"
    ;;
esac

# The example config, with this run's ports and database, [limits] raised
# far above the load so the limiter is not what is measured, and for wallet
# mixes the example's commented [[wallet_operator]], pointed at this run's
# wallet simulator and certificates.
python3 - "$config_dir/posgate.example.toml" "$work/posgate.toml" "$gateway_port" "$bank_port" "$db_url" \
  "$wallet_port" "$wallets" "${WRITERS:-}" <<'EOF'
import re, sys
source, target, gateway_port, bank_port, db_url, wallet_port, wallets, writers = sys.argv[1:]
text = open(source).read()
def sub(pattern, replacement, count):
    global text
    text, n = re.subn(pattern, replacement, text, flags=re.M)
    assert n == count, (pattern, n)
sub(r'^listen = "127\.0\.0\.1:50051"$', f'listen = "127.0.0.1:{gateway_port}"', 1)
sub(r'^addr = "127\.0\.0\.1:8583"$', f'addr = "127.0.0.1:{bank_port}"', 2)
sub(r'^url = "sqlite://posgate\.db"$', f'url = "{db_url}"', 1)
if writers:
    sub(r'^writers = \d+$', f'writers = {writers}', 1)
sub(r'^\[limits\]\n(?:[a-z_]+ = \d+\n)+',
    '[limits]\nterminal_per_second = 1000000\nterminal_burst = 1000000\n'
    'store_per_second = 1000000\nstore_burst = 1000000\nmax_in_flight = 100000\n', 1)
if wallets == "1":
    block = re.search(r'^# \[\[wallet_operator\]\]\n(?:# .*\n)+', text, flags=re.M)
    assert block, "no commented [[wallet_operator]] in the example"
    operator = re.sub(r'^# ', '', block.group(0), flags=re.M)
    operator, n = re.subn(r'^url = "https://localhost:8443"',
                          f'url = "https://localhost:{wallet_port}"', operator, flags=re.M)
    assert n == 1, ("url", n)
    operator, n = re.subn(r'"certs/dev/', '"certs/', operator)
    assert n == 3, ("certs/dev", n)
    text += "\n" + operator
open(target, "w").write(text)
EOF
sed "s/^listen = \"127.0.0.1:8583\"$/listen = \"127.0.0.1:$bank_port\"/" \
  "$config_dir/bank-sim.example.toml" >"$work/bank-sim.toml"
grep -q "^listen = \"127.0.0.1:$bank_port\"$" "$work/bank-sim.toml"
if ((wallets)); then
  # The example simulator on this run's port and certificates; the load's
  # wallet (the first) opens with NT$10,000,000,000,000 and may hold 100 times
  # that: a top-up moves NT$100, a payment NT$1, so no run reaches either bound.
  python3 - "$config_dir/wallet-sim.example.toml" "$work/wallet-sim.toml" "$wallet_port" <<'EOF'
import re, sys
source, target, wallet_port = sys.argv[1:]
text = open(source).read()
def sub(pattern, replacement, count):
    global text
    text, n = re.subn(pattern, replacement, text, flags=re.M)
    assert n == count, (pattern, n)
sub(r'^listen = "127\.0\.0\.1:8443"$', f'listen = "127.0.0.1:{wallet_port}"', 1)
sub(r'"certs/dev/', '"certs/', 3)
sub(r'^(account_id = "1000000000000001"\n(?:member_barcode = .*\n)?)'
    r'balance_minor = \d+\nmax_balance_minor = \d+\n',
    r'\1balance_minor = 1000000000000000\nmax_balance_minor = 100000000000000000\n', 1)
open(target, "w").write(text)
EOF
fi

# The other instances' configs: the first one's on their own ports.
for ((i = 1; i < instances; i++)); do
  sed "s/^listen = \"127.0.0.1:$gateway_port\"$/listen = \"127.0.0.1:${gateway_ports[i]}\"/" \
    "$work/posgate.toml" >"$work/posgate-$i.toml"
  grep -q "^listen = \"127.0.0.1:${gateway_ports[i]}\"$" "$work/posgate-$i.toml"
done

cd "$work"
"$bin" certs init --dir certs >/dev/null
"$bin" keys --keystore keys/posgate.keystore --master-key-file keys/master.key init-test >/dev/null
"$bin" sim bank --config bank-sim.toml >bank.log 2>&1 &
bank_pid=$!
if ((wallets)); then
  "$bin" certs issue --dir certs --operator wallet-link --name wallet-link >/dev/null
  # Each log exists before its wait loop greps it (a background job opens its
  # redirection only once forked).
  : >wallet.log
  "$bin" sim wallet --config wallet-sim.toml >>wallet.log 2>&1 &
  wallet_pid=$!
  for _ in $(seq 300); do
    grep -q "listening on" wallet.log && break
    kill -0 "$wallet_pid" 2>/dev/null || { cat wallet.log >&2; exit 1; }
    sleep 0.1
  done
  grep -q "listening on" wallet.log || { echo "wallet simulator did not start" >&2; cat wallet.log >&2; exit 1; }
fi
# Starts instance $1 (0: posgate.toml, i: posgate-i.toml, log serve[-i].log),
# waits for it to listen (the first migrates first) and, for card mixes, for
# its bank links to sign on.
start_instance() {
  local config=posgate.toml log=serve.log pid
  if (($1 > 0)); then
    config=posgate-$1.toml
    log=serve-$1.log
  fi
  : >"$log"
  "$serve_bin" serve --config "$config" >>"$log" 2>&1 &
  pid=$!
  server_pids="$server_pids $pid"
  for _ in $(seq 600); do
    grep -q "posgate serving" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "posgate serving" "$log" || { echo "posgate serve ($config) did not start" >&2; cat "$log" >&2; exit 1; }
  if [[ $mix == *card* ]]; then
    for _ in $(seq 300); do
      grep -q "card payments health.*up=true\|up=true.*card payments health" "$log" && break
      sleep 0.1
    done
  fi
}
addrs=""
for ((i = 0; i < instances; i++)); do
  start_instance "$i"
  addrs="$addrs${addrs:+,}https://127.0.0.1:${gateway_ports[i]}"
done

"$bin" load --addr "$addrs" --pki-dir certs --config posgate.toml \
  --ceiling --json --concurrency "$concurrency" --duration-s "$duration_s" \
  --mix "$mix" --retry-share "$retry_share" >summary.json 2>load.log || {
  cat load.log >&2
  cat summary.json >&2
  exit 1
}
[[ -n ${JSON_OUT:-} ]] && cp summary.json "$JSON_OUT"

jq -r '"ceiling (no-op server): \(.ceiling.requests_per_s | round) req/s, p50 \(.ceiling.p50_ms) ms, p99 \(.ceiling.p99_ms) ms"' \
  summary.json >&2
jq -r 'select(.failures + .wallet_declines + .malformed_ok_answers > 0)
  | "gateway: \(.failures) failures, \(.wallet_declines) wallet declines, \(.malformed_ok_answers) malformed answers"' \
  summary.json >&2
label=$backend
if ((instances > 1)); then
  label="$backend/$instances"
  jq -r '.addresses[] | "gateway \(.addr): \(.requests) requests"' summary.json >&2
fi
jq -r --arg mix "$mix" --arg backend "$label" '
  "\($mix) \($backend) \(.overall.requests_per_s | round) \(.ratio) "
  + "\(.overall.latency_us_p50 / 1000)ms \(.overall.latency_us_p99 / 1000)ms"
' summary.json
