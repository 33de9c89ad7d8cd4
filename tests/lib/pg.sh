# A throwaway PostgreSQL for the tests (sourced): pg_start starts one from Debian's postgresql
# package — initdb into a new directory under /tmp (its own: the user it runs as, nobody when the
# tests run as root, must reach it) as an unprivileged user, a random port on 127.0.0.1, TLS on with a
# certificate of its own — and sets PG_URL (a libpq connection string, sslmode=require); pg_db NAME
# makes a database and prints its connection string; pg_stop stops it (pg_start arranges nothing
# else: call pg_stop from the suite's cleanup; it removes the directory). pg_available says whether the package is here.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_DIR=
PG_PORT=
PG_URL=
pg_available() { [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ]; }
pg_as() { # runs a PostgreSQL program as the owner of the cluster (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
pg_start() {
  PG_DIR=$(mktemp -d /tmp/cergw-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown nobody:nogroup "$PG_DIR"
  chmod 700 "$PG_DIR"
  pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U cergw --auth=trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log"; return 1; }
  pg_as openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout "$PG_DIR/data/server.key" \
    -out "$PG_DIR/data/server.crt" >/dev/null 2>&1 && pg_as chmod 600 "$PG_DIR/data/server.key"
  for _ in 1 2 3 4 5; do
    PG_PORT=$(( 46000 + RANDOM % 9000 ))
    if pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c ssl=on -c max_connections=200 -c fsync=on" \
      >/dev/null 2>&1; then
      PG_URL="host=127.0.0.1 port=$PG_PORT user=cergw dbname=postgres sslmode=require"
      return 0
    fi
  done
  tail -20 "$PG_DIR/server.log"
  return 1
}
pg_db() { # NAME: a new database, its connection string printed
  psql "$PG_URL" -q -X -c "CREATE DATABASE $1" >/dev/null || return 1
  echo "host=127.0.0.1 port=$PG_PORT user=cergw dbname=$1 sslmode=require"
}
pg_stop() {
  [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] && pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
  [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
  PG_DIR=
}
# The database stopped hard and started again on the same port (a crash and a restart)
pg_crash() { pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1; }
pg_restart() {
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c ssl=on -c max_connections=200 -c fsync=on" >/dev/null 2>&1
}
