#!/usr/bin/env bash
# Test certificates for scripts (the demo's and the benchmarks' TLS setups), made with Debian's
# openssl: a CA, and a server certificate for localhost and 127.0.0.1 signed by it.
#
#   scripts/tls-certs.sh DIR     # writes DIR/ca.crt, DIR/server.crt, DIR/server.key
#
# The Rust tests make theirs with rcgen (integration/src/certs.rs); these are for the shell.
set -euo pipefail
dir=${1:?usage: tls-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=pgdog demo CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 600 server.key ca.key
