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

# /metrics is checked with the Prometheus project's own Python parser.
ensure_prometheus_parser() {
    if python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
        return
    fi
    say "installing prometheus-client (an independent parser of /metrics for the tests)"
    python3 -m pip install --quiet prometheus-client
}

MOTO_PID=""
cleanup() {
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

ensure_postgres
ensure_s3
ensure_bubblewrap
ensure_prometheus_parser

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
