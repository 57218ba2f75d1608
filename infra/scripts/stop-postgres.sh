#!/usr/bin/env bash
# Stop the PostgreSQL that start-postgres.sh started in DATA_DIR (fast shutdown); keeps the data.
#
#   infra/scripts/stop-postgres.sh DATA_DIR
#
# Exits 0 when it was stopped or was not running.
set -euo pipefail

die() { echo "stop-postgres: error: $*" >&2; exit 2; }

[[ $# -eq 1 ]] || die "usage: $0 DATA_DIR"
PGDATA_DIR=$1/pgdata
[[ -s $PGDATA_DIR/PG_VERSION ]] || die "$PGDATA_DIR is not a PostgreSQL cluster"

if initdb=$(command -v initdb 2>/dev/null); then
    BINDIR=$(dirname -- "$(readlink -f -- "$initdb")")
else
    BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[[ -n $BINDIR && -x $BINDIR/pg_ctl ]] || die "pg_ctl not found"

if [[ $EUID -eq 0 ]]; then
    as_owner() { runuser -u "$(stat -c %U "$PGDATA_DIR")" -- "$@"; }
else
    as_owner() { "$@"; }
fi

if as_owner "$BINDIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    as_owner "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >&2
else
    echo "stop-postgres: not running" >&2
fi
