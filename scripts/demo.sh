#!/usr/bin/env bash
# Set up, then run a one-node Gatehouse cluster on loopback and walk through it:
# add a user, log in, list nodes, run commands through the proxy with gsh and
# with plain OpenSSH. Everything lives in a temporary directory; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
repo=$PWD
export PATH="$repo/.venv/bin:$PATH"
work=$(mktemp -d /tmp/gatehouse-demo.XXXXXX)
export GATEHOUSE_HOME="$work/home"
cd "$work"
echo "== gatehouse start   (state in $work/gatehouse-data)"
gatehouse start > gatehouse.log 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
for _ in $(seq 1 100); do gatectl status >/dev/null 2>&1 && break; sleep 0.2; done
gatectl status
node=$(hostname)
set -x
gatectl users add alice --roles=access --logins=root
echo 'correct-horse-battery' | gatectl users set-password alice --password-stdin
echo 'correct-horse-battery' | gsh login --proxy=127.0.0.1:3080 --user=alice --password-stdin --insecure
gsh status
gsh ls
gsh ssh "root@$node" 'echo "hello from $(hostname) as $(id -un)"'
gsh config > ssh_config
ssh -F ssh_config "root@$node.gatehouse.local" 'echo "and through plain OpenSSH"'
gatectl events --since=10m
set +x
echo "== demo done; the cluster keeps running for you in $work (Ctrl-C to stop):"
echo "   export PATH=$repo/.venv/bin:\$PATH GATEHOUSE_HOME=$GATEHOUSE_HOME; cd $work"
echo "   gsh ssh root@$node"
wait $daemon
