#!/usr/bin/env bash
# make demo: run one ECU on the built-in default configuration (config/single.conf) and walk
# through what RTCR does: targets as protection domains, their cap spaces, a checkpoint, a
# crash, and a restore that continues where the target was.
# The control socket and state directory are moved to a temporary directory so that the demo
# does not disturb an agent installed on this machine; everything else is single.conf as is.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
tmp=$(mktemp -d /tmp/rtcr-demo.XXXXXX)
agent_pid=
cleanup() {
    if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
        kill -TERM "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

sed -e "s|^\(    control = \)\"[^\"]*\"|\1\"$tmp/ecu1.sock\"|" \
    -e "s|^\(    state_dir = \)\"[^\"]*\"|\1\"$tmp/state\"|" config/single.conf >"$tmp/single.conf"
cp config/*.calib config/*.messages "$tmp/" 2>/dev/null || true
sed -i "s|^\(    target_dir = \)\"\"|\1\"$PWD/$B/targets\"|" "$tmp/single.conf"
conf=$tmp/single.conf
ctl() { "$B/ecuctl" -c "$conf" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n$ ecuctl %s\n' "$1" "${*:2}"; ctl "${@:2}"; }

echo "Starting ecu-agent on config/single.conf (control socket and state in $tmp)"
"$B/ecu-agent" -c "$conf" >"$tmp/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.05; done
sleep 1

step "the ECU" status
step "its targets: each a process, a protection domain" targets
step "brake's capability space (slot, badge, type, object)" caps brake
echo; echo "== brake's LOG: a 10 ms timer and wheel-speed interrupts on IRQ line 5"
ctl log brake | tail -n 4
step "checkpoint brake now (incremental after the first)" checkpoint brake
sleep 0.3
step "another epoch: only the pages written since the last one" checkpoint brake
at_ckpt=$(ctl log brake | grep '^tick=' | tail -n 1)
sleep 0.3
before=$(ctl log brake | grep '^tick=' | tail -n 1)
step "simulate a crash: SIGKILL brake's process" kill brake
sleep 0.2
step "brake has failed" targets
lines=$(ctl log brake | wc -l)
step "restore brake from its newest epoch in a fresh process" restore brake
sleep 0.3
echo
echo "== brake continues from the checkpoint, not from zero"
echo "   last LOG line when epoch 2 was taken:   $at_ckpt"
echo "   last LOG line before the crash:         $before   (work after the checkpoint is redone)"
echo "   first LOG lines after the restore:"
ctl log brake | tail -n +"$((lines + 1))" | grep '^tick=' | head -n 3 | sed 's/^/      /'
step "the same cap space, slot by slot; only badges are new" caps brake
step "the epochs of brake's image" images brake

echo; echo "== stopping the agent (SIGTERM)"
kill -TERM "$agent_pid"
wait "$agent_pid" && echo "ecu-agent exited cleanly" || echo "ecu-agent exited with $?"
agent_pid=
echo; echo "== the agent's log"
cat "$tmp/agent.log"
