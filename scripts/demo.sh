#!/usr/bin/env bash
# Set up, then run `gatehouse demo`: the seed's three clusters on loopback (root
# sso.example.com, leaves us-east-1a and us-east-1b joined over reverse tunnels),
# and take a short tour as the root user. With a terminal it keeps running until
# Ctrl-C; without one (CI, scripts) it stops the clusters after the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
repo=$PWD
export PATH="$repo/.venv/bin:$PATH"
work=$(mktemp -d /tmp/gatehouse-demo.XXXXXX)
export GATEHOUSE_HOME="$work/home"
gatehouse demo --dir "$work/clusters" > "$work/demo.out" &
demo=$!
trap 'kill $demo 2>/dev/null; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    grep -q "Ctrl-C" "$work/demo.out" 2>/dev/null && break
    kill -0 $demo 2>/dev/null || { cat "$work/demo.out"; echo "gatehouse demo failed" >&2; exit 1; }
    sleep 0.2
done
cat "$work/demo.out"
echo
echo "== the tour (as alice, logged in to the root only)"
set -x
gsh clusters
gsh ls --all
gsh ssh --cluster=us-east-1a root@node1 'echo "hello from $(hostname) in us-east-1a as $(id -un)"'
gsh ssh --cluster=us-east-1b root@node1 'echo "and from us-east-1b"'
gsh config > "$work/ssh_config"
ssh -F "$work/ssh_config" root@node1.us-east-1b 'echo "plain OpenSSH through the root proxy and the tunnel"'
gatectl -c "$work/clusters/sso.example.com/gatehouse.yaml" get rc
gatectl -c "$work/clusters/us-east-1a/gatehouse.yaml" events --type=session.start,session.end
set +x
if [ -t 0 ]; then
    echo "== the clusters keep running (Ctrl-C to stop); in another terminal:"
    echo "   export PATH=$repo/.venv/bin:\$PATH GATEHOUSE_HOME=$GATEHOUSE_HOME"
    wait $demo
fi
