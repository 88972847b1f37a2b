#!/usr/bin/env bash
# The gateway's own CPU per request, in instructions (valgrind's callgrind),
# for PayBill, card Authorize and wallet Pay on the SQLite backend.
#
# For each workload `posgate serve` runs under callgrind twice, on a fresh
# database with fresh simulators (`posgate sim bank`, `posgate sim wallet`,
# each in its own process, answering at once, not measured), and
# `posgate load --count N` drives it; Ir/request is
# (Ir(N_HIGH) - Ir(N_LOW)) / (N_HIGH - N_LOW), so start-up, handshakes and
# shutdown cancel out. Instruction counts do not move with machine load.
#
# Usage: scripts/callgrind-per-request.sh [POSGATE_BINARY]
#   POSGATE_BINARY  a release build with debug line tables, e.g.
#                   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p posgate
#                   [default: target/release/posgate]
# Environment:
#   WORKLOADS    default "paybill authorize wallet-pay"
#   N_LOW N_HIGH request counts of the two runs [500 1500]
#   CONCURRENCY  virtual terminals of the load client [8]
#   PORT_BASE    the gateway listens on PORT_BASE, the bank simulator on +1,
#                the wallet simulator on +2 [50951]
#   OUT          where the callgrind files and logs stay [a temporary directory]
#   SERVE_ENV    extra environment for `posgate serve`, e.g. "RUST_LOG=warn"
#   LOG_ACCESS   `[log] access` of the gateway: info, debug or off [the example's]
#   CONFIG_DIR   where the example configs are [config/ of this checkout]; for a
#                binary of another version, that version's config/
# Prints one line per workload: "<workload> <Ir/request>", then where the
# callgrind files are (callgrind_annotate --inclusive=yes FILE).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$repo/target/release/posgate}")
workloads=${WORKLOADS:-"paybill authorize wallet-pay"}
n_low=${N_LOW:-500}
n_high=${N_HIGH:-1500}
concurrency=${CONCURRENCY:-8}
port=${PORT_BASE:-50951}
bank_port=$((port + 1))
wallet_port=$((port + 2))
config_dir=$(realpath "${CONFIG_DIR:-$repo/config}")
out=${OUT:-$(mktemp -d /tmp/callgrind-per-request.XXXXXX)}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/callgrind-work.XXXXXX)
children=()
cleanup() {
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
"$bin" certs init --dir certs >/dev/null
"$bin" certs init --dir certs/dev >/dev/null
"$bin" certs issue --dir certs/dev --operator wallet-link --name wallet-link >/dev/null
"$bin" keys --keystore keys/posgate.keystore --master-key-file keys/master.key init-test >/dev/null

# The example configs, on our own ports, with limits that never refuse the load.
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" \
    -e "s/^addr = \"127.0.0.1:8583\"/addr = \"127.0.0.1:$bank_port\"/" \
    -e 's/^terminal_per_second = .*/terminal_per_second = 100000/' \
    -e 's/^terminal_burst = .*/terminal_burst = 100000/' \
    -e 's/^store_per_second = .*/store_per_second = 100000/' \
    -e 's/^store_burst = .*/store_burst = 100000/' \
    "$config_dir/posgate.example.toml" >posgate.toml
if [ -n "${LOG_ACCESS:-}" ]; then
    sed -i -e '/^access = /d' -e "s/^json = false$/json = false\naccess = \"$LOG_ACCESS\"/" posgate.toml
fi
cat >>posgate.toml <<EOF

[[wallet_operator]]
id = "ICASH"
name = "i-Cash"
url = "https://localhost:$wallet_port"
currency = "TWD"
key_id = "posgate-dev-1"
signing_key = "partner-api.signing"
operator_key_id = "icash-sim-1"
operator_public_key_hex = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
ca_cert = "certs/dev/ca.pem"
client_cert = "certs/dev/wallet-link.pem"
client_key = "certs/dev/wallet-link.key"
top_up_unit_minor = 10000
max_top_up_minor = 1000000
max_payment_minor = 1000000
card_number_length = 16
stores = ["S001"]
fingerprint_key = "pan-fingerprint"
EOF
sed -e "s/^listen = .*/listen = \"127.0.0.1:$bank_port\"/" \
    "$config_dir/bank-sim.example.toml" >bank-sim.toml
# Enough balance that no Pay of NT$1 is declined.
sed -e "s/^listen = .*/listen = \"127.0.0.1:$wallet_port\"/" \
    -e 's/^balance_minor = 100000$/balance_minor = 1000000/' \
    "$config_dir/wallet-sim.example.toml" >wallet-sim.toml

# Waits until FILE contains PATTERN (fails after 300 s).
wait_for() {
    local file=$1 pattern=$2
    for _ in $(seq 3000); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$pattern' in $file" >&2
    tail -20 "$file" >&2
    return 1
}

# Runs one measured serve: workload $1, $2 requests; prints the Ir total.
measure() {
    local workload=$1 count=$2 mix
    case $workload in
        paybill) mix=pay=100 ;;
        authorize) mix=card=100 ;;
        wallet-pay) mix=wallet=100 ;;
        *) echo "unknown workload $workload" >&2; return 1 ;;
    esac
    local run=$workload.$count load_failed=0
    rm -rf db && mkdir db
    "$bin" sim bank --config bank-sim.toml >"$out/$run.bank.log" 2>&1 &
    local bank=$!
    "$bin" sim wallet --config wallet-sim.toml >"$out/$run.wallet.log" 2>&1 &
    local wallet=$!
    children+=("$bank" "$wallet")
    # shellcheck disable=SC2086
    env POSGATE_DATABASE_URL="sqlite://$work/db/posgate.db" ${SERVE_ENV:-} \
        valgrind --tool=callgrind --callgrind-out-file="$out/$run.callgrind" \
        "$bin" serve --config posgate.toml >"$out/$run.serve.log" 2>&1 &
    local serve=$!
    children+=("$serve")
    wait_for "$out/$run.serve.log" "posgate serving"
    [ "$workload" = authorize ] && wait_for "$out/$run.serve.log" "card payments health.*true"
    "$bin" load --addr "https://127.0.0.1:$port" --pki-dir certs --config posgate.toml \
        --concurrency "$concurrency" --count "$count" --mix "$mix" --retry-share 0 \
        >"$out/$run.load.txt" 2>"$out/$run.load.log" || load_failed=1
    kill -TERM "$serve"
    wait "$serve" || true
    kill "$bank" "$wallet" 2>/dev/null || true
    wait "$bank" "$wallet" 2>/dev/null || true
    if [ "$load_failed" = 1 ]; then
        echo "$run: posgate load failed, see $out/$run.load.txt and .load.log" >&2
        return 1
    fi
    grep -E '^(summary|totals):' "$out/$run.callgrind" | head -1 | awk '{print $2}'
}

for workload in $workloads; do
    low=$(measure "$workload" "$n_low") || exit 1
    high=$(measure "$workload" "$n_high") || exit 1
    echo "$workload $(( (high - low) / (n_high - n_low) ))"
done
echo "callgrind files and logs: $out" >&2
