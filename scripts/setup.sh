#!/usr/bin/env bash
# Install what Gatehouse and its tests need on a fresh Debian machine: OpenSSH
# (client for the tests and `gsh config`, server for the benchmark, sftp-server for
# the nodes' file transfer), iproute2 and
# iptables (network namespaces and the no-ingress firewall in the tests), faketime
# (libfaketime: the clock-skew tests shift a leaf's clock), etcd-server (the etcd
# backend's tests start their own etcd on loopback), and the Python package with
# its pinned dependencies in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in ssh:openssh-client sshd:openssh-server ip:iproute2 iptables:iptables \
           faketime:faketime etcd:etcd-server; do
    bin=${cmd%%:*}; pkg=${cmd#*:}
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then need+=("$pkg"); fi
done
# The node serves file transfer with OpenSSH's sftp-server, run as the session's login.
if [ ! -x /usr/lib/openssh/sftp-server ]; then need+=(openssh-sftp-server); fi
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
