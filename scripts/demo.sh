#!/usr/bin/env bash
# newbieha demo: node1, node2, witness and a client, each a network namespace
# on one bridge. The cluster is set up with init and join exactly as an
# operator would; the stub model server runs on both GPU nodes; the client
# requests through the VIP every 20 ms while the active agent is killed
# with SIGKILL, and prints who answered and the outage.
#   scripts/demo.sh up     build the lab, run the demo, tear it down
#   KEEP=1 scripts/demo.sh up   leave the lab running (then: scripts/demo.sh down)
#   scripts/demo.sh drill  the same lab, then drill run docs/runbooks/holder-crashes.yaml
#                          from the witness (RUNBOOK=... for another) and its report
#   scripts/demo.sh down   remove everything the demo created
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${NEWBIEHA_BIN:-$ROOT/bin/newbieha}
STUB=${NEWBIEHA_STUB_BIN:-$ROOT/bin/stub-model}
WATCH=$ROOT/bin/vipwatch
VIP=10.78.0.100
P=nbhademo
STATE=/tmp/$P
SUBNET=10.78.0
HOSTS=(node1 node2 witness client)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nsx() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

down() {
  if [ -d "$STATE" ]; then
    touch "$STATE/down" # the agents' supervisors start nothing more
    for f in "$STATE"/*.super.pid "$STATE"/*.pid; do
      [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    for f in "$STATE"/*.pid; do
      [ -e "$f" ] || continue
      for _ in $(seq 1 30); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  fi
  for h in "${HOSTS[@]}" client br; do
    ip netns del "$P-$h" 2>/dev/null || true
  done
  rm -rf "$STATE"
}

up() {
  [ "$(id -u)" = 0 ] || { echo "the demo needs root (network namespaces)"; exit 1; }
  for b in "$BIN" "$STUB" "$WATCH"; do
    [ -x "$b" ] || { echo "no binary at $b: run make build"; exit 1; }
  done
  down
  mkdir -p "$STATE"
  [ -n "${KEEP:-}" ] || trap down EXIT

  say "Three hosts on one L2 segment ($SUBNET.0/24, inside network namespaces)"
  ip netns add "$P-br"
  ip -n "$P-br" link add br0 type bridge
  ip -n "$P-br" link set br0 up
  local i=1
  for h in "${HOSTS[@]}"; do
    ip netns add "$P-$h"
    ip link add "${P:0:6}$i" type veth peer name "${P:0:6}b$i"
    ip link set "${P:0:6}$i" netns "$P-$h"
    ip link set "${P:0:6}b$i" netns "$P-br"
    ip -n "$P-br" link set "${P:0:6}b$i" master br0 up
    ip -n "$P-$h" addr add "$SUBNET.$i/24" dev "${P:0:6}$i"
    ip -n "$P-$h" link set "${P:0:6}$i" up
    ip -n "$P-$h" link set lo up
    echo "  $h: $SUBNET.$i"
    i=$((i + 1))
  done

  say "The model service (stub) on both GPU nodes, started outside newbieha"
  for h in node1 node2; do
    ip netns exec "$P-$h" "$STUB" --listen :8080 --node "$h" >"$STATE/stub-$h.log" 2>&1 &
    echo $! >"$STATE/stub-$h.pid"
    disown
  done

  say "node1: newbieha init --cluster-config (VIP $VIP/24)"
  cat >"$STATE/cluster.yaml" <<CFG
vip:
  address: $VIP/24
service:
  health_url: http://127.0.0.1:8080/health
CFG
  cat "$STATE/cluster.yaml"
  nsx node1 "$BIN" init --name node1 --advertise "$SUBNET.1" --data-dir "$STATE/node1" --cluster-config "$STATE/cluster.yaml" | tee "$STATE/init.txt"
  local token
  token=$(grep -o 'nbha1\.[a-z0-9.]*' "$STATE/init.txt" | head -1)
  start node1

  say "node2 and witness: newbieha join"
  nsx node2 "$BIN" join "$SUBNET.1" --token "$token" --name node2 --role gpu --advertise "$SUBNET.2" --data-dir "$STATE/node2"
  start node2
  nsx witness "$BIN" join "$SUBNET.1" --token "$token" --name witness --role witness --advertise "$SUBNET.3" --data-dir "$STATE/witness"
  start witness

  say "Waiting for three voters and a VIP holder"
  for _ in $(seq 1 150); do
    if nsx witness "$BIN" status --data-dir "$STATE/witness" -o json 2>/dev/null | grep -c '"voter": true' | grep -q 3 &&
       nsx witness "$BIN" status --data-dir "$STATE/witness" -o json 2>/dev/null | grep -q '"holder": "node'; then
      break
    fi
    sleep 0.2
  done
  say "newbieha status (on witness)"
  nsx witness "$BIN" status --data-dir "$STATE/witness" || true # exit 1 means degraded
  if [ "${MODE:-}" = drill ]; then
    drill_demo
    return
  fi
  local active
  active=$( (nsx witness "$BIN" status --data-dir "$STATE/witness" -o json || true) | sed -n 's/.*"holder": "\([a-z0-9-]*\)".*/\1/p')
  local other=node1
  [ "$active" = node1 ] && other=node2

  say "The client requests http://$VIP:8080/health every 20 ms; SIGKILL the agent on $active in 2 s"
  ip netns exec "$P-client" "$WATCH" --url "http://$VIP:8080/health" --duration 20s --until "$other" --quiet --json "$STATE/client.json" >"$STATE/client.txt" &
  local wpid=$!
  sleep 2
  kill -9 "$(cat "$STATE/$active.pid")"
  echo "  killed the agent on $active at $(date +%T.%3N) (its supervisor starts it again 1 s later)"
  wait "$wpid" || true
  say "What the client saw"
  cat "$STATE/client.txt"
  say "newbieha status (on $other) and history"
  nsx "$other" "$BIN" status --data-dir "$STATE/$other" || true # exit 1 while the restarted agent is in its quarantine
  echo
  nsx "$other" "$BIN" history --data-dir "$STATE/$other"
  if [ -n "${KEEP:-}" ]; then
    say "Left running. Try: ip netns exec $P-node2 $BIN status --data-dir $STATE/node2 ; then: make demo-down"
  fi
}

# drill_demo runs a shipped runbook from the witness, as its "from:
# witness" asks, with an operator certificate (root on the witness's
# socket cannot carry a change to the leader: the witness holds no CA key).
drill_demo() {
  local runbook=${RUNBOOK:-docs/runbooks/holder-crashes.yaml}
  say "An operator certificate for the drill (signed on node1)"
  nsx node1 "$BIN" operator cert --name demo-drill --ttl 1h --out "$STATE/operator" --data-dir "$STATE/node1"
  # The witness's own API: the member the CLI talks to must not be the one
  # a fault takes away (holder-crashes kills the active node's agent).
  local remote=(--server "$SUBNET.3:7700" --cert-dir "$STATE/operator")
  say "The plan: newbieha drill run $runbook --dry-run (on witness; waits out the 30 s hold-down after the first move)"
  for _ in $(seq 1 250); do
    nsx witness "$BIN" "${remote[@]}" drill run "$ROOT/$runbook" --dry-run --data-dir "$STATE/witness" >"$STATE/plan.txt" 2>&1 && break
    sleep 0.2
  done
  cat "$STATE/plan.txt"
  say "newbieha drill run $runbook (on witness)"
  local rc=0
  nsx witness "$BIN" "${remote[@]}" drill run "$ROOT/$runbook" --data-dir "$STATE/witness" || rc=$?
  say "newbieha drill list, and the report as Markdown"
  nsx witness "$BIN" drill list --data-dir "$STATE/witness"
  local id
  id=$(nsx witness "$BIN" drill list --data-dir "$STATE/witness" -o json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | head -1)
  [ -z "$id" ] || nsx witness "$BIN" drill report "$id" -o markdown --data-dir "$STATE/witness"
  echo "drill run exited $rc"
  return "$rc"
}

# start runs the agent on h under a supervisor that starts it again when
# it exits, as systemd does (Restart=always, RestartSec=1s): the
# holder-crashes drill kills it and checks that it comes back.
start() {
  local h=$1
  (
    while :; do
      ip netns exec "$P-$h" "$BIN" agent --data-dir "$STATE/$h" >>"$STATE/$h.log" 2>&1 &
      echo $! >"$STATE/$h.pid"
      wait $! || true
      [ -e "$STATE/down" ] && break
      sleep 1
    done
  ) &
  echo $! >"$STATE/$h.super.pid"
  disown
  echo "  started agent on $h (log: $STATE/$h.log)"
}

case "${1:-up}" in
  up) up ;;
  drill) MODE=drill up ;;
  down) down ;;
  *) echo "usage: $0 up|drill|down"; exit 2 ;;
esac
