# Sourced by scripts (bench/sync-run, scripts/demo): starts the loopback FHIR test server in the
# background and waits until it listens.
#
#   source tests/server/start.sh
#   start_fhir_server WORKDIR [--load PATH ...]   # sets FHIR_BASE, FHIR_ORIGIN, FHIR_SERVER_PID
#   stop_fhir_server
#
# The server's stdin is a FIFO held open by a sleeping process: it exits when that closes (or on
# stop_fhir_server), so it never outlives the script. Its log is WORKDIR/fhir-server.log.
start_fhir_server() {
  local work=$1
  shift
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  "$here/install.sh" >/dev/null
  rm -f "$work/fhir-server.stdin" "$work/fhir-server.port"
  mkfifo "$work/fhir-server.stdin"
  sleep 1000000 > "$work/fhir-server.stdin" &
  FHIR_STDIN_HOLDER=$!
  node "$here/server.mjs" --port 0 "$@" < "$work/fhir-server.stdin" \
    > "$work/fhir-server.port" 2> "$work/fhir-server.log" &
  FHIR_SERVER_PID=$!
  local _
  for _ in $(seq 1 600); do
    [ -s "$work/fhir-server.port" ] && break
    if ! kill -0 "$FHIR_SERVER_PID" 2>/dev/null; then
      echo "the test FHIR server did not start:" >&2
      cat "$work/fhir-server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  FHIR_BASE=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).base)' \
    "$work/fhir-server.port")
  FHIR_ORIGIN=${FHIR_BASE%/fhir/R4}
}

stop_fhir_server() {
  [ -n "${FHIR_SERVER_PID:-}" ] && kill "$FHIR_SERVER_PID" 2>/dev/null || true
  [ -n "${FHIR_STDIN_HOLDER:-}" ] && kill "$FHIR_STDIN_HOLDER" 2>/dev/null || true
  FHIR_SERVER_PID=
  FHIR_STDIN_HOLDER=
}
