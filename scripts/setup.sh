#!/usr/bin/env bash
# Install what Gatehouse and its tests need on a fresh Debian machine: OpenSSH
# (client for the tests and `gsh config`, server for the benchmark, sftp-server for
# the nodes' file transfer), iproute2 and
# iptables (network namespaces and the no-ingress firewall in the tests), faketime
# (libfaketime: the clock-skew tests shift a leaf's clock), HAProxy (a TCP load
# balancer in front of several proxies, in the tests), etcd-server (the etcd
# backend's tests start their own etcd on loopback), PostgreSQL 15 (the
# postgres backend's tests run initdb/pg_ctl from /usr/lib/postgresql/15/bin into a
# temporary directory, as the package's `postgres` user; no system service is used),
# the OpenID provider the SSO tests run (the oidc-provider npm package, on Node.js, in
# .cache/idp), and the Python package with its pinned dependencies in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in ssh:openssh-client sshd:openssh-server ip:iproute2 iptables:iptables \
           faketime:faketime haproxy:haproxy etcd:etcd-server node:nodejs npm:npm; do
    bin=${cmd%%:*}; pkg=${cmd#*:}
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then need+=("$pkg"); fi
done
# The node serves file transfer with OpenSSH's sftp-server, run as the session's login.
if [ ! -x /usr/lib/openssh/sftp-server ]; then need+=(openssh-sftp-server); fi
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then need+=(postgresql-15); fi
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Byte-compile our own sources now: an editable install leaves them uncompiled, and
# where PYTHONDONTWRITEBYTECODE is set every `gsh` start would compile them again.
.venv/bin/python -m compileall -q src >/dev/null

# The SSO tests' identity provider, at the version tests/idp/package.json pins.
idp_version=$(sed -n 's/.*"oidc-provider": "\(.*\)".*/\1/p' tests/idp/package.json)
if [ ! -f ".cache/idp/node_modules/oidc-provider/package.json" ] || \
   ! grep -q "\"version\": \"$idp_version\"" .cache/idp/node_modules/oidc-provider/package.json; then
    mkdir -p .cache/idp
    npm install --prefix .cache/idp --no-audit --no-fund --no-save --silent "oidc-provider@$idp_version"
fi
