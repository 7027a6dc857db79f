#!/usr/bin/env bash
# A real S3-compatible object store on 127.0.0.1 for tests and local runs: SeaweedFS (Apache-2.0), one
# `weed server` process holding a master, a volume server, a filer and the S3 gateway.
#
#   s3.sh install   build SeaweedFS's `weed` from the Go module proxy into the cache (once; ~11 min cold)
#   s3.sh start     start the server (first time: pick free ports, generate credentials, create the bucket);
#                   prints the connection as shell lines: export AWS_ENDPOINT_URL=... (see `env`)
#   s3.sh stop      stop the server (SIGTERM, then SIGKILL after 30 s; a graceful stop takes ~15 s, as the filer
#                   waits for the volume server it outlives to take its last metadata-log write)
#   s3.sh kill      kill -9 the server (fault tests)
#   s3.sh restart   stop then start on the same ports, credentials and data
#   s3.sh address   print the endpoint URL of the running server
#   s3.sh env       print the connection of the running server as `export NAME=value` lines:
#                   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP
#                   (plain HTTP endpoint, for object_store/delta-rs), VITALFLOW_S3_BUCKET
#   s3.sh clean     kill the server and delete its state
#
# Conditional writes (PUT with If-None-Match: * / If-Match: <etag>) are enforced by the gateway, which is
# what Delta Lake commits on S3 without DynamoDB rely on (tests/system/test_s3_server.py checks it).
#
# Environment:
#   VITALFLOW_CACHE     where the `weed` binary is cached (default ~/.cache/vitalflow), outside the checkout
#   VITALFLOW_S3_DIR    server state: ports, pid, credentials, data, log (default /tmp/vitalflow-s3)
#   S3_PORT             S3 port at first start (default: a free port the OS picks)
#   VITALFLOW_S3_BUCKET bucket created at first start (default vitalflow)
set -euo pipefail

# The SeaweedFS module version (a pseudo-version of github.com/seaweedfs/seaweedfs) the Go proxy serves.
seaweedfs_version=v0.0.0-20261109003541-7506e5f91cd6
cache=${VITALFLOW_CACHE:-$HOME/.cache/vitalflow}
home="$cache/seaweedfs-$seaweedfs_version"
weed="$home/bin/weed"
state=$(realpath -m "${VITALFLOW_S3_DIR:-/tmp/vitalflow-s3}")
region=us-east-1
# Every port the process listens on (gRPC ports too: their default, port+10000, can collide or overflow).
port_names="s3 s3_grpc master master_grpc volume volume_grpc filer filer_grpc"

log() { echo "s3.sh: $*" >&2; }

install() {
  if [ -x "$weed" ] && [ -f "$home/.complete" ]; then return 0; fi
  command -v go >/dev/null || { log "go is required to build SeaweedFS from the Go module proxy"; exit 1; }
  log "building SeaweedFS $seaweedfs_version from the Go module proxy into $home (takes minutes)"
  local src
  # `go install module@version` refuses modules whose go.mod has replace directives (SeaweedFS has one), so
  # the module is downloaded and built as the main module, with its own go.mod and go.sum (verified).
  src=$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$seaweedfs_version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$home/bin"
  (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" go build -ldflags="-s -w" -o "$weed.tmp" ./weed)
  mv "$weed.tmp" "$weed"
  touch "$home/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port() { cat "$state/port.$1"; }

pid_alive() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

address() { echo "http://127.0.0.1:$(port s3)"; }

bucket() { cat "$state/bucket"; }

env_lines() {
  printf 'export AWS_ENDPOINT_URL=%q\n' "$(address)"
  printf 'export AWS_ACCESS_KEY_ID=%q\n' "$(cat "$state/access_key")"
  printf 'export AWS_SECRET_ACCESS_KEY=%q\n' "$(cat "$state/secret_key")"
  printf 'export AWS_REGION=%q\n' "$region"
  printf 'export AWS_ALLOW_HTTP=true\n'
  printf 'export VITALFLOW_S3_BUCKET=%q\n' "$(bucket)"
}

# First start: ports, one identity with full rights on every bucket, the bucket name.
init_state() {
  mkdir -p "$state/data"
  local name
  for name in $port_names; do
    [ -f "$state/port.$name" ] && continue
    if [ "$name" = s3 ] && [ -n "${S3_PORT:-}" ]; then echo "$S3_PORT"; else free_port; fi > "$state/port.$name"
  done
  [ -f "$state/bucket" ] || echo "${VITALFLOW_S3_BUCKET:-vitalflow}" > "$state/bucket"
  [ -f "$state/secret_key" ] && return 0
  python3 -c 'import secrets; print("VF" + secrets.token_hex(9).upper())' > "$state/access_key"
  python3 -c 'import secrets; print(secrets.token_urlsafe(30))' > "$state/secret_key"
  (umask 077 && python3 - "$state" > "$state/s3.json" <<'PY'
import json, pathlib, sys
state = pathlib.Path(sys.argv[1])
print(json.dumps({"identities": [{
    "name": "vitalflow",
    "credentials": [{"accessKey": (state / "access_key").read_text().strip(),
                     "secretKey": (state / "secret_key").read_text().strip()}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}]}, indent=2))
PY
  )
  chmod 600 "$state/secret_key"
}

# One SigV4-signed request with the standard library: `s3_request METHOD PATH[?QUERY]`; prints the HTTP status.
s3_request() {
  python3 - "$1" "$2" "$(address)" "$(cat "$state/access_key")" "$(cat "$state/secret_key")" "$region" <<'PY'
import datetime, hashlib, hmac, sys, urllib.error, urllib.request
method, target, endpoint, key, secret, region = sys.argv[1:]
path, _, query = target.partition("?")
query = "&".join(sorted(p if "=" in p else p + "=" for p in query.split("&") if p))
now = datetime.datetime.now(datetime.timezone.utc)
stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
host = endpoint.split("://", 1)[1]
empty = hashlib.sha256(b"").hexdigest()
headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": stamp}
signed = ";".join(sorted(headers))
canonical = "\n".join([method, path, query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, empty])
scope = f"{day}/{region}/s3/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}"
request = urllib.request.Request(endpoint + target, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError:
    print(0)
PY
}

# The filer's metadata store: the default embedded leveldb2 (8 partitions), with small buffers and caches
# (its defaults, 16 MiB write buffer and 32 MiB block cache per partition, cost ~100 MiB at idle).
write_filer_toml() {
  cat > "$state/filer.toml" <<EOF
[leveldb2]
enabled = true
dir = "$state/data/filerldb2"
write_buffer_size_mb = 1
block_cache_size_mb = 2
EOF
}

start() {
  install
  if pid_alive; then env_lines; return 0; fi
  mkdir -p "$state"
  init_state
  rm -f "$state"/*.sock
  write_filer_toml
  # The working directory is the state dir: `weed` also reads *.toml from its working directory.
  cd "$state"
  # Loopback only; telemetry, the Iceberg and Lance endpoints and the IAM API off; 64 MiB volumes grown on
  # demand (at most 100), no replication; no pre-stop delay, and a 1 s raft election (a restart resumes the
  # single master's state instead of waiting 10 s). SENTRY_DSN empty: no error reports; logs to server.log.
  # Idle it uses ~0.4 % of a core and ~30 MiB of anonymous memory (RSS ~170 MiB, mostly the binary's pages).
  setsid env SENTRY_DSN= GOMAXPROCS=2 "$weed" -logtostderr=true -v=0 -config_dir="$state" server \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$state/data" \
    -master.port="$(port master)" -master.port.grpc="$(port master_grpc)" \
    -master.volumeSizeLimitMB=64 -master.defaultReplication=000 -master.telemetry=false -master.electionTimeout=1s \
    -volume.port="$(port volume)" -volume.port.grpc="$(port volume_grpc)" -volume.max=100 \
    -volume.preStopSeconds=0 \
    -filer.port="$(port filer)" -filer.port.grpc="$(port filer_grpc)" -filer.localSocket="$state/filer.sock" \
    -s3 -s3.port="$(port s3)" -s3.port.grpc="$(port s3_grpc)" -s3.localSocket="$state/s3.sock" \
    -s3.config="$state/s3.json" -s3.iam=false -s3.port.iceberg=0 -s3.port.lance=0 \
    >> "$state/server.log" 2>&1 < /dev/null &
  echo $! > "$state/pid"
  # Ready when the bucket exists and a signed ListObjectsV2 on it answers 200 (creating it answers 200 the
  # first time, 409 BucketAlreadyOwnedByYou after a restart; before the filer is up it answers 5xx or 0).
  local status
  for _ in $(seq 1 240); do
    if ! pid_alive; then log "server exited; last log lines:"; tail -n 30 "$state/server.log" >&2; exit 1; fi
    status=$(s3_request PUT "/$(bucket)")
    if [ "$status" = 200 ] || [ "$status" = 409 ]; then
      if [ "$(s3_request GET "/$(bucket)?list-type=2")" = 200 ]; then
        env_lines
        return 0
      fi
    fi
    sleep 0.5
  done
  log "S3 gateway not ready on $(address) within 120 s"; tail -n 30 "$state/server.log" >&2; exit 1
}

# The gRPC unix sockets `weed server` makes in /tmp (not configurable), named by our gRPC ports.
remove_sockets() {
  local name
  for name in master volume filer s3; do
    [ -f "$state/port.${name}_grpc" ] && rm -f "/tmp/seaweedfs-$name-grpc-$(port "${name}_grpc").sock"
  done
  return 0
}

stop() {
  local signal=${1:-TERM}
  pid_alive || { rm -f "$state/pid"; remove_sockets; return 0; }
  local pid; pid=$(cat "$state/pid")
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$state/pid"; remove_sockets; return 0; }
    sleep 0.5
  done
  log "server did not stop in 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/pid"
  remove_sockets
}

running() { pid_alive || { log "no S3 server running in $state"; exit 1; }; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  restart) stop TERM; start ;;
  address) running; address ;;
  env) running; env_lines ;;
  clean) stop KILL; rm -rf "$state" ;;
  *) echo "usage: $0 install|start|stop|kill|restart|address|env|clean" >&2; exit 2 ;;
esac
