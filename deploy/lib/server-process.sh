# Sourced by deploy/kafka/kafka.sh and deploy/s3/s3.sh: the test servers' process handling. The sourcing
# script sets `state` (its state directory, holding `pid`) and `log` (a function writing to stderr).

# A free TCP port on 127.0.0.1, as the OS picks it.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

# Sends SIGNAL (default TERM) to the server and waits up to 30 s for it to exit, then kills it.
stop() {
  local signal=${1:-TERM}
  pid_alive || { rm -f "$state/pid"; return 0; }
  local pid; pid=$(cat "$state/pid")
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$state/pid"; return 0; }
    sleep 0.5
  done
  log "server did not stop in 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/pid"
}
