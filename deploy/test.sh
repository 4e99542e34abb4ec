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

ensure_postgres

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
