#!/usr/bin/env bash
# A real S3-compatible object store on 127.0.0.1 for tests and local runs: S3Proxy (Apache-2.0, the
# `org.gaul:s3proxy` jar from Maven Central), one Java process serving the S3 API over a local directory
# (its `filesystem-nio2` backend).
#
#   s3.sh install   fetch the S3Proxy jar from Maven Central (through mvn) into the cache (once)
#   s3.sh start     start the server (first time: pick a free port, generate credentials, create the bucket);
#                   prints the connection as shell lines: export AWS_ENDPOINT_URL=... (see `env`)
#   s3.sh stop      stop the server (SIGTERM, then SIGKILL after 30 s)
#   s3.sh kill      kill -9 the server (fault tests)
#   s3.sh restart   stop then start on the same port, credentials and data
#   s3.sh address   print the endpoint URL of the running server
#   s3.sh env       print the connection of the running server as `export NAME=value` lines:
#                   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP
#                   (plain HTTP endpoint, for object_store/delta-rs), VITALFLOW_S3_BUCKET
#   s3.sh clean     kill the server and delete its state
#
# Conditional writes (PUT with If-None-Match: * / If-Match: <etag>) are enforced by the server, which is
# what Delta Lake commits on S3 without DynamoDB rely on (tests/system/test_s3_server.py checks it).
#
# Environment:
#   VITALFLOW_CACHE     where the jar is cached (default ~/.cache/vitalflow), outside the checkout
#   VITALFLOW_S3_DIR    server state: port, pid, credentials, data, log (default /tmp/vitalflow-s3)
#   S3_PORT             S3 port at first start (default: a free port the OS picks)
#   VITALFLOW_S3_BUCKET bucket created at first start (default vitalflow)
set -euo pipefail

s3proxy_version=4.1.1
cache=${VITALFLOW_CACHE:-$HOME/.cache/vitalflow}
jar="$cache/s3proxy-$s3proxy_version.jar"
state=$(realpath -m "${VITALFLOW_S3_DIR:-/tmp/vitalflow-s3}")
region=us-east-1

log() { echo "s3.sh: $*" >&2; }
# free_port, pid_alive, stop
. "$(dirname "${BASH_SOURCE[0]}")/../lib/server-process.sh"

install() {
  [ -f "$jar" ] && return 0
  command -v java >/dev/null || { log "java (17 or newer) is required to run S3Proxy"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is required to fetch S3Proxy from Maven Central"; exit 1; }
  log "fetching S3Proxy $s3proxy_version from Maven Central into $cache"
  mkdir -p "$cache"
  local out; out=$(mktemp -d "$cache/s3proxy.XXXXXX")
  # Through Maven, as Kafka is fetched: its repository settings and mirrors apply, and -C fails on a
  # checksum that does not match the one Maven Central publishes.
  mvn -q -B -C org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="org.gaul:s3proxy:$s3proxy_version:jar:jar-with-dependencies" -DoutputDirectory="$out" >&2 \
    || { rm -rf "$out"; log "could not fetch org.gaul:s3proxy:$s3proxy_version from Maven Central"; exit 1; }
  mv "$out/s3proxy-$s3proxy_version-jar-with-dependencies.jar" "$jar"
  rm -rf "$out"
}

port() { cat "$state/port.$1"; }

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

# First start: the port, one identity, the bucket name.
init_state() {
  mkdir -p "$state/data"
  if [ ! -f "$state/port.s3" ]; then
    if [ -n "${S3_PORT:-}" ]; then echo "$S3_PORT"; else free_port; fi > "$state/port.s3"
  fi
  [ -f "$state/bucket" ] || echo "${VITALFLOW_S3_BUCKET:-vitalflow}" > "$state/bucket"
  [ -f "$state/secret_key" ] && return 0
  python3 -c 'import secrets; print("VF" + secrets.token_hex(9).upper())' > "$state/access_key"
  python3 -c 'import secrets; print(secrets.token_urlsafe(30))' > "$state/secret_key"
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

# S3Proxy reads its settings from a properties file; it holds the secret, so only the owner reads it.
write_properties() {
  (umask 077 && cat > "$state/s3proxy.conf" <<EOF
s3proxy.endpoint=http://127.0.0.1:$(port s3)
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$(cat "$state/access_key")
s3proxy.credential=$(cat "$state/secret_key")
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir=$state/data
EOF
  )
}

start() {
  install
  if pid_alive; then env_lines; return 0; fi
  mkdir -p "$state"
  init_state
  write_properties
  # Loopback only; a small heap and the serial GC: a test server beside the suites on a small machine.
  setsid java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -jar "$jar" --properties "$state/s3proxy.conf" \
    >> "$state/server.log" 2>&1 < /dev/null &
  echo $! > "$state/pid"
  # Ready when the bucket exists and a signed ListObjectsV2 on it answers 200 (creating it answers 200 the
  # first time, 409 BucketAlreadyOwnedByYou after a restart; before the server listens it answers 0).
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
    sleep 0.25
  done
  log "S3 server not ready on $(address) within 60 s"; tail -n 30 "$state/server.log" >&2; exit 1
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
