#!/usr/bin/env bash
# test_agent_basic — one standalone ecu-agent with the example targets, driven by ecuctl:
# targets run with real pids, the control socket is 0600, stop/start/kill work and a killed
# target is reported failed with "signal 9" while the agent keeps running, brake logs tick=
# lines (its wheel-speed sensor fires IRQ 5), errors and usage errors have their exit codes,
# an unreachable agent gives exit 3, a second agent on the same socket is refused, a stale
# socket is replaced, a bad config names file and key, and SIGTERM ends the agent with exit 0,
# no target left and the socket removed.
. "$(dirname "$0")/lib.sh"

require_build

running_count() { ctl ecu1 targets --json | jq -r '[.[] | select(.state == "running")] | length'; }
two_running() { [ "$(running_count)" = 2 ]; }
has_ticks() { ctl ecu1 log brake | grep -q 'tick='; }
pid_gone() { ! pid_alive "$1"; }

conf=$(write_config ecu1)
start_agent ecu1 "$conf"
check "agent starts and answers on its control socket" wait_agent ecu1 || { done_testing; exit 1; }
sock=${AGENT_SOCK[ecu1]}

check_eq "control socket is mode 0600" 600 "$(stat -c %a "$sock")"
check "control socket is a socket" test -S "$sock"

# --- targets -----------------------------------------------------------------------------
check "brake and logger become running" eventually 5 two_running
json=$(ctl ecu1 targets --json)
diag "targets: $json"
bpid=$(jq -r '.[] | select(.name == "brake") | .pid' <<<"$json")
lpid=$(jq -r '.[] | select(.name == "logger") | .pid' <<<"$json")
track_pid "$bpid" "$lpid"
check "targets --json: brake running with a live pid" \
    jq_true "$json" '.[] | select(.name == "brake") | .state == "running" and .pid > 0'
check "targets --json: the pid is a live process" pid_alive "$bpid"
check "targets --json: integer pid, restarts, ram_quota, ram_used, failure null" \
    jq_true "$json" 'all(.[]; (.pid | type == "number") and (.restarts | type == "number")
                         and (.ram_quota | type == "number") and (.ram_used | type == "number")
                         and .failure == null)'
check_eq "targets --json: brake quota is 16M" 16777216 \
    "$(jq -r '.[] | select(.name == "brake") | .ram_quota' <<<"$json")"
check "targets text: header and one line per target" \
    all_match "$(ctl ecu1 targets)" '^NAME +STATE +PID +RESTARTS +RAM +FAILURE$' \
    "^brake +running +$bpid +0 " '^logger +running '

# --- status ------------------------------------------------------------------------------
check "status --json: name, pid, targets, sensors" \
    jq_true "$(ctl ecu1 status --json)" \
    '.name == "ecu1" and .pid == $p and .targets == 2 and .sensors == 1' \
    --argjson p "${AGENT_PID[ecu1]}"
check "status text names the ECU and counts targets" \
    all_match "$(ctl ecu1 status)" '^ecu: +ecu1$' '^targets: +2 '

# --- log: the sensor fires IRQ 5 every 20 ms, brake logs tick= lines ------------------------
check "log brake contains tick= lines" eventually 5 has_ticks
check "log brake --json is an array of strings" \
    jq_true "$(ctl ecu1 log brake --json)" 'type == "array" and length > 0 and all(.[]; type == "string")'
check "brake's LOG lines reach the agent's log prefixed with the target" \
    eventually 3 grep -q 'brake: tick=[0-9]' "${AGENT_LOG[ecu1]}"

# --- irq ---------------------------------------------------------------------------------
check "irq 5 --json reports line and notified sessions" \
    jq_true "$(ctl ecu1 irq 5 --json)" '.line == 5 and (.notified | type == "number")'
ctl ecu1 irq 256 >/dev/null 2>&1
check_eq "irq 256: refused with exit 1" 1 "$?"

# --- caps --------------------------------------------------------------------------------
check "caps brake --json: task at slot 1, gates with integer badges, typed rows" \
    jq_true "$(ctl ecu1 caps brake --json)" \
    'any(.[]; .slot == 1 and .type == "task" and .badge == null)
     and any(.[]; .type == "gate" and (.badge | type == "number"))
     and all(.[]; (.type | IN("task", "thread", "gate", "irq")) and (.rights | type == "string")
                  and (.object | type == "string") and (.slot | type == "number"))'
check "caps text: header and operator format (0x000201  0x0017a  GATE    ...)" \
    all_match "$(ctl ecu1 caps brake)" '^SLOT +BADGE +TYPE +OBJECT$' \
    '^0x[0-9a-f]{6}  0x[0-9a-f]{5}  GATE    [^ ]' '^0x000001  -        TASK    '

# --- stop / start ------------------------------------------------------------------------
check "stop brake exits 0" ctl ecu1 stop brake
check "brake is stopped with pid null" \
    jq_true "$(ctl ecu1 targets --json)" '.[] | select(.name == "brake") | .state == "stopped" and .pid == null'
check "the stopped brake process is gone" eventually 3 pid_gone "$bpid"
ctl ecu1 stop brake >/dev/null 2>&1
check_eq "stop of a stopped target: exit 1" 1 "$?"
ctl ecu1 caps brake >/dev/null 2>&1
check_eq "caps of a stopped target: exit 1" 1 "$?"
check "start brake exits 0" ctl ecu1 start brake
check "brake runs again" eventually 5 target_running ecu1 brake
bpid2=$(target_field ecu1 brake pid)
track_pid "$bpid2"
check "restarted brake has a new live pid" bash -c "[ '$bpid2' != '$bpid' ] && kill -0 '$bpid2'"
ctl ecu1 start brake >/dev/null 2>&1
check_eq "start of a running target: exit 1" 1 "$?"

# --- kill: a simulated crash ---------------------------------------------------------------
check "kill brake exits 0" ctl ecu1 kill brake
check "killed brake is reported failed" eventually 5 target_state_is ecu1 brake failed
failure=$(target_field ecu1 brake failure)
diag "failure: $failure"
check "failure text mentions signal 9" grep -q 'signal 9' <<<"$failure"
check "failed target shows its failure in the text table" \
    all_match "$(ctl ecu1 targets)" '^brake +failed +- +.*signal 9'
check "the agent keeps running after a target crash" pid_alive "${AGENT_PID[ecu1]}"
check "logger is unaffected by brake's crash" target_running ecu1 logger
check "the agent logged the failure" \
    eventually 3 grep -q "target 'brake' failed: .*signal 9" "${AGENT_LOG[ecu1]}"
check "a failed target can be started again" ctl ecu1 start brake
check "brake runs after the restart" eventually 5 target_running ecu1 brake
track_pid "$(target_field ecu1 brake pid)"

# --- errors and exit codes ---------------------------------------------------------------
err=$(ctl ecu1 start nosuch 2>&1 >/dev/null)
check_eq "unknown target: exit 1" 1 "$?"
check "unknown target: message names it" grep -q "no target 'nosuch'" <<<"$err"
"$ECUCTL" -s "$sock" frobnicate >/dev/null 2>&1
check_eq "unknown command: usage exit 2" 2 "$?"
"$ECUCTL" -s "$sock" start >/dev/null 2>&1
check_eq "missing argument: usage exit 2" 2 "$?"
env -u ECUCTL_SOCKET "$ECUCTL" targets >/dev/null 2>&1
check_eq "no socket given: usage exit 2" 2 "$?"
help=$("$ECUCTL" --help)
check "ecuctl --help lists every command" all_match "$help" '^  targets ' '^  start NAME' \
    '^  stop NAME' '^  kill NAME' '^  caps NAME' '^  log NAME' '^  irq LINE' '^  status '
check "ecuctl -c CONFIG finds the socket" bash -c "'$ECUCTL' -c '$conf' status >/dev/null"

err=$("$ECUCTL" -s "$TEST_TMP/nobody.sock" status 2>&1)
check_eq "unreachable agent (no socket file): exit 3" 3 "$?"
check "unreachable: message names the path and asks if it runs" \
    grep -q "cannot reach ecu-agent at $TEST_TMP/nobody.sock: .*(is it running?)" <<<"$err"

# --- a second agent on the same socket is refused ------------------------------------------
"$AGENT" -c "$conf" >"$TEST_TMP/second.log" 2>&1 &
second=$!
track_pid "$second"
wait "$second"
check "second agent on the same control socket exits non-zero" test "$?" -ne 0
check "second agent says another agent is running" grep -q "another ecu-agent" "$TEST_TMP/second.log"
check "first agent still answers after the refused second one" ctl ecu1 status

# --- bad config ----------------------------------------------------------------------------
bad=$TEST_TMP/bad.conf
sed 's/        ram = 16M/        ram = 16Q/' "$conf" >"$bad"
err=$("$AGENT" -c "$bad" 2>&1)
check "bad config: agent exits non-zero" test "$?" -ne 0
check "bad config: message names file and key" \
    grep -q "bad.conf: targets/brake/ram: \"16Q\" is not a size (use 16M, 1G, ...)" <<<"$err"
sed 's/^    log_lines = 200/    log_linse = 200/' "$conf" >"$bad"
err=$("$AGENT" -c "$bad" --check 2>&1)
check "typo in a key: --check exits non-zero" test "$?" -ne 0
check "typo in a key: --check names file and key" grep -q 'bad.conf: ecu/log_linse: unknown key' <<<"$err"
check "--check accepts the valid config" bash -c "'$AGENT' -c '$conf' --check >/dev/null 2>&1"
mkdir "$TEST_TMP/single"
cp "$ROOT/config/single.conf" "$ROOT/config/brake.calib" "$ROOT/config/logger.messages" "$TEST_TMP/single/"
sed -i "s|target_dir = \"\"|target_dir = \"$TARGET_DIR\"|" "$TEST_TMP/single/single.conf"
check "--check accepts config/single.conf (with the build's targets)" \
    "$AGENT" -c "$TEST_TMP/single/single.conf" --check

# --- SIGTERM: orderly shutdown ---------------------------------------------------------------
pids=$(ctl ecu1 targets --json | jq -r '.[] | .pid // empty')
track_pid $pids
stop_agent ecu1 TERM
check_eq "SIGTERM: agent exits 0" 0 "$AGENT_RC"
left=
for p in $pids; do pid_alive "$p" && left="$left $p"; done
check_eq "SIGTERM: no target process left" "" "$left"
check "SIGTERM: control socket removed" test ! -e "$sock"
check "SIGTERM: agent logged the shutdown" grep -q "shutting down" "${AGENT_LOG[ecu1]}"

# --- a stale socket from a killed agent ------------------------------------------------------
start_agent ecu1 "$conf"
check "agent restarts" wait_agent ecu1
pids=$(ctl ecu1 targets --json | jq -r '.[] | .pid // empty')
track_pid $pids
stop_agent ecu1 KILL
check "SIGKILLed agent leaves its socket file behind" test -S "$sock"
"$ECUCTL" -s "$sock" status >/dev/null 2>&1
check_eq "stale socket: ecuctl exit 3" 3 "$?"
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
start_agent ecu1 "$conf"
check "a new agent replaces the stale socket" wait_agent ecu1
check_eq "replaced socket is mode 0600" 600 "$(stat -c %a "$sock")"
stop_agent ecu1 TERM
check_eq "second SIGTERM: exit 0" 0 "$AGENT_RC"

done_testing
