#!/usr/bin/env bash
# Start a PostgreSQL of lsdr's own on 127.0.0.1: one for the Prefect server and the unit ledger.
#
#   infra/scripts/start-postgres.sh DATA_DIR PORT
#
# DATA_DIR holds everything: the cluster (pgdata/), its socket directory (run/), its log
# (postgres.log) and the generated password of the database user "lsdr" (password, mode 0600).
# The first run initialises the cluster (initdb); every run starts it if it is not running and
# creates the databases "prefect" and "lsdr_ledger" if they are missing, so it is idempotent.
# On success the last lines on stdout are KEY=VALUE lines (PGDATA, PGPORT, PGHOST, PGUSER,
# PREFECT_DATABASE_URL, LSDR_LEDGER_URL); progress goes to stderr.
#
# PostgreSQL refuses to run as root: run as root, the script runs the server as the "postgres"
# user (created if missing) with runuser, so DATA_DIR's parents must be searchable by it.
# Binaries: initdb from PATH, else the newest /usr/lib/postgresql/*/bin, else (as root on
# Debian) apt-get installs Debian's postgresql without creating its default cluster.
set -euo pipefail

die() { echo "start-postgres: error: $*" >&2; exit 2; }
say() { echo "start-postgres: $*" >&2; }

[[ $# -eq 2 ]] || die "usage: $0 DATA_DIR PORT"
PORT=$2
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "PORT must be 1-65535, not '$PORT'"
mkdir -p -- "$1"
DATA_DIR=$(cd -- "$1" && pwd -P)
[[ $DATA_DIR != *"'"* ]] || die "DATA_DIR must not contain a single quote: $DATA_DIR"
PGDATA_DIR=$DATA_DIR/pgdata
SOCKET_DIR=$DATA_DIR/run
LOG=$DATA_DIR/postgres.log
PASSWORD_FILE=$DATA_DIR/password
DB_USER=lsdr
DATABASES=(prefect lsdr_ledger)

find_bindir() {
    local initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        dirname -- "$(readlink -f -- "$initdb")"
        return 0
    fi
    local dirs
    dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dirs && -x $dirs/initdb ]] && { echo "$dirs"; return 0; }
    return 1
}

if ! BINDIR=$(find_bindir); then
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null ||
        die "no PostgreSQL found (initdb not in PATH nor /usr/lib/postgresql/*/bin); install it"
    say "installing Debian's postgresql (without its default cluster)"
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q -o Dpkg::Options::=--force-confold postgresql >&2
    BINDIR=$(find_bindir) || die "postgresql installed but no initdb found"
fi
for tool in initdb pg_ctl psql; do
    [[ -x $BINDIR/$tool ]] || die "$BINDIR/$tool missing"
done

# Who runs the server: ourselves, or (as root) the postgres user.
if [[ $EUID -eq 0 ]]; then
    RUN_USER=postgres
    if ! id -u "$RUN_USER" >/dev/null 2>&1; then
        say "creating system user $RUN_USER"
        useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin "$RUN_USER"
    fi
    as_owner() { runuser -u "$RUN_USER" -- "$@"; }
else
    RUN_USER=$(id -un)
    as_owner() { "$@"; }
fi

chmod 755 "$DATA_DIR"
as_owner test -x "$DATA_DIR" ||
    die "user $RUN_USER cannot reach $DATA_DIR (a parent directory is not searchable by it)"

if [[ ! -s $PASSWORD_FILE ]]; then
    (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PASSWORD_FILE")
fi
PASSWORD=$(<"$PASSWORD_FILE")

mkdir -p "$PGDATA_DIR" "$SOCKET_DIR"
chmod 700 "$PGDATA_DIR" "$SOCKET_DIR"
if [[ $EUID -eq 0 ]]; then
    chown "$RUN_USER": "$PGDATA_DIR" "$SOCKET_DIR"
    touch "$LOG" && chown "$RUN_USER": "$LOG"
fi

if [[ ! -s $PGDATA_DIR/PG_VERSION ]]; then
    say "initialising a cluster in $PGDATA_DIR"
    pwfile=$(mktemp)
    trap 'rm -f -- "$pwfile"' EXIT
    printf '%s\n' "$PASSWORD" >"$pwfile"
    [[ $EUID -eq 0 ]] && chown "$RUN_USER": "$pwfile"
    # Socket connections (a 0700 directory: the owner only) are trusted; TCP needs the password.
    as_owner "$BINDIR/initdb" -D "$PGDATA_DIR" -U "$DB_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
    rm -f -- "$pwfile"
    echo "include_if_exists = 'lsdr.conf'" | as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
fi

if as_owner "$BINDIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    running_port=$(sed -n 4p "$PGDATA_DIR/postmaster.pid")
    [[ $running_port == "$PORT" ]] ||
        die "PostgreSQL in $PGDATA_DIR already runs on port $running_port; stop it first"
    say "already running on port $PORT"
else
    # Rewritten on every start, so the cluster can be restarted on another PORT.
    as_owner tee "$PGDATA_DIR/lsdr.conf" >/dev/null <<EOF
# Written by lsdr's start-postgres.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
EOF
    say "starting PostgreSQL on 127.0.0.1:$PORT (log $LOG)"
    as_owner "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 60 start >&2 ||
        die "PostgreSQL did not start; tail of $LOG: $(tail -n 5 "$LOG")"
fi

psql_as_owner() {
    as_owner "$BINDIR/psql" -h "$SOCKET_DIR" -p "$PORT" -U "$DB_USER" -d postgres \
        -v ON_ERROR_STOP=1 -qtA "$@"
}
for db in "${DATABASES[@]}"; do
    if [[ $(psql_as_owner -c "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
        say "creating database $db"
        psql_as_owner -c "CREATE DATABASE $db OWNER $DB_USER" >/dev/null
    fi
done

echo "PGDATA=$PGDATA_DIR"
echo "PGHOST=127.0.0.1"
echo "PGPORT=$PORT"
echo "PGUSER=$DB_USER"
echo "PREFECT_DATABASE_URL=postgresql+asyncpg://$DB_USER:$PASSWORD@127.0.0.1:$PORT/prefect"
echo "LSDR_LEDGER_URL=postgresql://$DB_USER:$PASSWORD@127.0.0.1:$PORT/lsdr_ledger"
