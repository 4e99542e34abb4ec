#!/usr/bin/env bash
# Ick's whole test suite: formatting, lints, and every test against real
# services (Postgres, and the helpers the tests need) on this machine.
#
#   deploy/test.sh            # everything
#   DATABASE_URL=postgres://user@host/db deploy/test.sh   # another Postgres
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        say "using Postgres at DATABASE_URL"
        return
    fi
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local version
        version=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1}')
        if [ -n "$version" ]; then
            say "starting the local Postgres $version cluster"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
            for _ in $(seq 1 50); do
                pg_isready -q -h 127.0.0.1 -p 5432 && return
                sleep 0.2
            done
        fi
    fi
    cat >&2 <<'MSG'
Ick's tests need PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth),
or DATABASE_URL pointing at one where the user may create databases.
  Debian/Ubuntu: apt-get install postgresql && pg_ctlcluster 15 main start
  Or any server:  DATABASE_URL=postgres://user@host:5432/postgres deploy/test.sh
MSG
    exit 1
}

# The artifact store's S3 backend is tested against a real S3-compatible
# server: moto_server (PyPI: moto[server]) on a loopback port, installed if
# missing, stopped when this script exits. ICK_TEST_S3_ENDPOINT points the
# tests at it (or at another server if you set it yourself).
ensure_s3() {
    if [ -n "${ICK_TEST_S3_ENDPOINT:-}" ]; then
        say "using the S3 server at ICK_TEST_S3_ENDPOINT"
        return
    fi
    if ! command -v moto_server >/dev/null 2>&1 \
        || ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
        say "installing moto[server] (an S3-compatible server for the tests)"
        python3 -m pip install --quiet 'moto[server]'
        hash -r
    fi
    local log url=""
    log=$(mktemp)
    moto_server -H 127.0.0.1 -p 0 >"$log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 300); do
        url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n 1 || true)
        [ -n "$url" ] && break
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            cat "$log" >&2
            echo "moto_server exited before it listened" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$url" ]; then
        cat "$log" >&2
        echo "moto_server did not start within 30 s" >&2
        exit 1
    fi
    export ICK_TEST_S3_ENDPOINT="$url"
    say "moto_server (S3) at $url"
}

# The worker-manager runs `where: chroot` and `where: container` actions in
# bubblewrap (bwrap); its tests use it. Installed from Debian's packages if
# missing (as root), once.
ensure_bubblewrap() {
    if command -v bwrap >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing bubblewrap (for the worker-manager's container actions)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q bubblewrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
        hash -r
        command -v bwrap >/dev/null 2>&1 && return
    fi
    echo "the tests need bubblewrap (bwrap): apt-get install bubblewrap" >&2
    exit 1
}

# The web dashboard's tests drive a real headless Chromium over WebDriver.
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing chromium and chromium-driver (the dashboard's browser tests)"
        export DEBIAN_FRONTEND=noninteractive
        local install=(apt-get install -y -q --no-install-recommends chromium chromium-driver)
        "${install[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && "${install[@]}" >/dev/null; }
        hash -r
        command -v chromedriver >/dev/null 2>&1 && return
    fi
    echo "the tests need chromium and chromedriver: apt-get install chromium chromium-driver" >&2
    exit 1
}

# /metrics is checked with the Prometheus project's own Python parser.
ensure_prometheus_parser() {
    if python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
        return
    fi
    say "installing prometheus-client (an independent parser of /metrics for the tests)"
    python3 -m pip install --quiet prometheus-client
}

# deploy/prometheus/prometheus.yml is checked with promtool, and a test
# (tests/tests/metrics.rs) runs a Prometheus of its own with it: both from
# Debian's prometheus package, installed if missing (as root), once. The
# package starts a Prometheus service (on :9090) where it can; that one is
# not wanted, so it is stopped again, and kept from starting at boot.
ensure_prometheus() {
    if command -v promtool >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing prometheus (its promtool checks deploy/prometheus/prometheus.yml)"
        export DEBIAN_FRONTEND=noninteractive
        local install=(apt-get install -y -q --no-install-recommends prometheus)
        "${install[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && "${install[@]}" >/dev/null; }
        if [ -d /run/systemd/system ]; then
            systemctl disable --now prometheus.service >/dev/null 2>&1 || true
        fi
        if [ -x /etc/init.d/prometheus ]; then
            /etc/init.d/prometheus stop >/dev/null 2>&1 || true
            update-rc.d prometheus disable >/dev/null 2>&1 || true
        fi
        # Only the package's own daemon: its user is the one it just made.
        pkill -u prometheus -x prometheus 2>/dev/null || true
        hash -r
        command -v promtool >/dev/null 2>&1 && return
    fi
    echo "the checks need promtool: apt-get install prometheus" >&2
    exit 1
}

# The sample monitoring files in deploy/: the Prometheus config as promtool
# reads it, and the Grafana dashboard, whose queries may name only the
# metrics the services serve (below; counters as NAME_total, histograms as
# NAME_bucket, _sum and _count) and must parse as PromQL (promtool reads
# them as rules, with the dashboard's variables filled in).
check_monitoring() {
    say "promtool check config deploy/prometheus/prometheus.yml"
    promtool check config deploy/prometheus/prometheus.yml >/dev/null
    say "checking the queries of deploy/grafana/ick-dashboard.json"
    python3 -m json.tool deploy/grafana/ick-dashboard.json >/dev/null
    CHECK_TMP=$(mktemp -d)
    python3 - deploy/grafana/ick-dashboard.json "$CHECK_TMP/rules.yml" <<'PY'
import json, re, sys

COUNTERS = """ick_http_requests ick_builds_triggered ick_builds_ended
    ick_output_bytes ick_tokens_issued ick_auth_failures ick_blob_bytes_in
    ick_blob_bytes_out ick_actions_ended""".split()
HISTOGRAMS = """ick_http_request_duration_seconds ick_build_duration_seconds
    ick_build_queue_wait_seconds ick_claim_wait_seconds
    ick_action_duration_seconds""".split()
GAUGES = """ick_builds ick_nodes_queued ick_nodes_ready ick_nodes_running
    ick_workers ick_notifications ick_blobs ick_blob_storage_bytes
    ick_upload_sessions ick_actions_running ick_output_buffered_bytes""".split()
ALLOWED = set(GAUGES) | {c + "_total" for c in COUNTERS} | {
    h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

path, rules_path = sys.argv[1], sys.argv[2]
dashboard = json.load(open(path))
variables = dashboard.get("templating", {}).get("list", [])
# What each variable stands for when promtool parses a query.
values = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
for v in variables:
    values[v["name"]] = "1h" if v.get("type") == "interval" else ".*"

queries = []  # (where, PromQL)
def walk(node, where):
    if isinstance(node, dict):
        where = node.get("title", where)
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                queries.append((where, value))
            else:
                walk(value, where)
    elif isinstance(node, list):
        for item in node:
            walk(item, where)
walk(dashboard.get("panels", []), "?")
for v in variables:
    if v.get("type") == "query":
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q
        queries.append(("variable " + v["name"], q))

errors = []
if all(where.startswith("variable ") for where, _ in queries):
    errors.append("no panel has an expr")
rules = []
for where, expr in queries:
    for name in sorted(set(re.findall(r"\bick_[A-Za-z0-9_:]*", expr))):
        if name not in ALLOWED:
            errors.append(f"{where!r}: {name} is not a metric Ick serves")
    if where.startswith("variable "):
        continue
    def fill(m):
        name = m.group(1) or m.group(2)
        if name.isdigit():  # ${1}: label_replace's, not Grafana's
            return m.group(0)
        if name not in values:
            errors.append(f"{where!r}: ${name} is no variable of the dashboard")
            return m.group(0)
        return values[name]
    promql = re.sub(r"\$\{(\w+)\}|\$(\w+)", fill, expr)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", where).strip("_")
    rules.append({"record": f"dashboard:{len(rules) + 1}_{slug}", "expr": promql})
if errors:
    sys.exit(path + ":\n  " + "\n  ".join(errors))
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(rules_path, "w"))
print(f"{len(rules)} queries name only Ick's metrics", file=sys.stderr)
PY
    promtool check rules "$CHECK_TMP/rules.yml" >/dev/null
    rm -rf "$CHECK_TMP"
    CHECK_TMP=""
}

MOTO_PID=""
CHECK_TMP=""
cleanup() {
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    if [ -n "$CHECK_TMP" ]; then
        rm -rf "$CHECK_TMP"
    fi
}
trap cleanup EXIT

ensure_postgres
ensure_s3
ensure_bubblewrap
ensure_prometheus_parser
ensure_prometheus
ensure_chromium

check_monitoring

say "cargo fmt"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
say "building the binaries the end-to-end tests start"
cargo build --workspace --bins
say "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi
say "all tests passed"
