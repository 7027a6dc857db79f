#!/usr/bin/env bash
# Makes the certificates for mutual TLS between a vitalflow cluster's processes (cluster.tls_* settings):
# a CA of the cluster's own (made once, kept in DIR) and a certificate it signs, which the scheduler and
# every executor present and check each other's against.
#
#   deploy/cluster-certs.sh DIR [HOST ...]
#
# DIR/ca.pem        the CA certificate: cluster.tls_ca_path of every process
# DIR/ca.key        the CA's key: keep it off the cluster's machines (needed only to sign more certificates)
# DIR/cluster.pem   a certificate for every HOST given, "localhost", 127.0.0.1, ::1 and "vitalflow-cluster"
#                   (the name to set as cluster.tls_server_name when processes have no stable host names):
#                   cluster.tls_cert_path
# DIR/cluster.key   its key: cluster.tls_key_path (mode 600)
#
# NAME=executor-1 deploy/cluster-certs.sh DIR host1 writes DIR/executor-1.pem and .key instead, signed by
# the same CA: one certificate per process if you prefer. Certificates are valid for DAYS (default 825).
# Needs openssl.
set -euo pipefail

dir=${1:?usage: deploy/cluster-certs.sh DIR [HOST ...]}
shift
name=${NAME:-cluster}
days=${DAYS:-825}
mkdir -p "$dir"
umask 077

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=vitalflow cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi

san="DNS:vitalflow-cluster,DNS:localhost,IP:127.0.0.1,IP:::1"
for host in "$@"; do
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san="$san,IP:$host"; else san="$san,DNS:$host"; fi
done
ext=$(mktemp)
trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
cat > "$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EOF
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=vitalflow-cluster" \
  -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days "$days" \
  -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
chmod 644 "$dir/ca.pem" "$dir/$name.pem"
echo "$dir/$name.pem"
