# lib.sh — shared helpers for RTCR integration tests (bash). Source it first:
#
#   . "$(dirname "$0")/lib.sh"
#   require_build                         # ecu-agent, ecuctl and targets/brake must exist
#   conf=$(write_config ecu1)             # temp config: temp control socket, sensors on
#   start_agent ecu1 "$conf"              # background agent, log in $TEST_TMP/ecu1.log
#   wait_agent ecu1                       # until `ecuctl status` answers
#   ctl ecu1 targets --json | jq ...      # ecuctl against that agent
#   check "brake runs" target_running ecu1 brake
#   stop_agent ecu1; echo "exit $AGENT_RC"
#   done_testing                          # prints the plan, exit status = failures
#
# Output is TAP: "ok N - what" / "not ok N - what", diagnostics as "# ...". The EXIT trap
# kills every process the script started (agents, their process groups, every target pid the
# script has seen, and any process still carrying this run's RTCR_TEST_TAG in its environment)
# and removes $TEST_TMP, also when the script fails or is interrupted.
#
# Variables: B (build dir, default build, relative to the repo root or absolute), ROOT (repo
# root), AGENT, ECUCTL, TARGET_DIR, TEST_TMP (private temp dir), AGENT_PID[name],
# AGENT_SOCK[name], AGENT_LOG[name], AGENT_RC (exit status from the last stop_agent/wait_exit).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case $B in /*) BUILD=$B ;; *) BUILD=$ROOT/$B ;; esac
AGENT=$BUILD/ecu-agent
ECUCTL=$BUILD/ecuctl
TARGET_DIR=$BUILD/targets
TEST_TMP=$(mktemp -d /tmp/rtcr-it.XXXXXX)
RTCR_TEST_TAG=rtcr-it-$$-$RANDOM
export RTCR_TEST_TAG

declare -A AGENT_PID=() AGENT_SOCK=() AGENT_LOG=()
declare -a _EXTRA_PIDS=()
AGENT_RC=
_tap_n=0
_tap_failed=0

# ---- TAP ----------------------------------------------------------------------------------

ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
not_ok() { _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1)); echo "not ok $_tap_n - $*"; }
diag() { local l; while IFS= read -r l; do echo "# $l" >&2; done <<<"$*"; }
# check DESCRIPTION COMMAND [ARGS...]: ok if the command succeeds
check() { local d=$1; shift; if "$@" >/dev/null; then ok "$d"; else not_ok "$d"; fi; }
# check_eq DESCRIPTION WANT GOT
check_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; diag "wanted '$2', got '$3'"; fi
}
# all_match TEXT REGEX...: every extended regex matches some line of TEXT
all_match() {
    local text=$1 re
    shift
    for re in "$@"; do
        grep -Eq -- "$re" <<<"$text" || { diag "no line matches: $re"; return 1; }
    done
}
# jq_true JSON FILTER [JQ ARGS...]: the filter yields true
jq_true() {
    local json=$1 filter=$2
    shift 2
    jq -e "$@" "$filter" <<<"$json" >/dev/null || { diag "jq false: $filter on $json"; return 1; }
}
# eventually TIMEOUT_S COMMAND [ARGS...]: retry every 0.1 s until it succeeds
eventually() {
    local t=$1; shift
    local end=$((SECONDS + t))
    while :; do
        "$@" && return 0
        [ $SECONDS -ge $end ] && return 1
        sleep 0.1
    done
}
done_testing() {
    echo "1..$_tap_n"
    [ "$_tap_failed" -eq 0 ]
}
bail() { echo "Bail out! $*"; exit 1; }

# ---- processes ---------------------------------------------------------------------------

# track_pid PID...: kill these at cleanup too (e.g. target pids seen via ecuctl)
track_pid() { local p; for p in "$@"; do [[ $p =~ ^[0-9]+$ ]] && _EXTRA_PIDS+=("$p"); done; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! _is_zombie "$1"; }
_is_zombie() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# pids of processes whose environment carries this run's tag
_tagged_pids() {
    local e p
    for e in /proc/[0-9]*/environ; do
        p=${e#/proc/}; p=${p%/environ}
        [ "$p" = $$ ] && continue
        { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qx "RTCR_TEST_TAG=$RTCR_TEST_TAG" && echo "$p"
    done
}

_cleanup() {
    local rc=$? name p
    trap - EXIT INT TERM
    for name in "${!AGENT_PID[@]}"; do
        p=${AGENT_PID[$name]}
        pid_alive "$p" && kill -TERM "$p" 2>/dev/null
    done
    for name in "${!AGENT_PID[@]}"; do
        p=${AGENT_PID[$name]}
        local end=$((SECONDS + 3))
        while pid_alive "$p" && [ $SECONDS -lt $end ]; do sleep 0.1; done
        pid_alive "$p" && kill -KILL "$p" 2>/dev/null
        kill -KILL -- "-$p" 2>/dev/null # the agent's process group (setsid)
    done
    local victims=("${_EXTRA_PIDS[@]}" $(_tagged_pids)) end=$((SECONDS + 3))
    for p in "${victims[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${victims[@]}"; do # SIGKILL is asynchronous: wait until they are gone
        while pid_alive "$p" && [ $SECONDS -lt $end ]; do sleep 0.05; done
    done
    wait 2>/dev/null
    rm -rf "$TEST_TMP"
    exit $rc
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- agents ------------------------------------------------------------------------------

require_build() {
    local f missing=
    for f in "$AGENT" "$ECUCTL" "$TARGET_DIR/brake" "$TARGET_DIR/logger" "$@"; do
        [ -x "$f" ] || missing="$missing $f"
    done
    if [ -n "$missing" ]; then
        not_ok "build products present"
        diag "missing:$missing (run make build first)"
        done_testing
        exit 1
    fi
}

# write_config NAME [SENSOR_PERIOD_MS]: a standalone ECU NAME with brake and logger, control
# socket in $TEST_TMP, wheel-speed sensor on line 5; prints the config path.
write_config() {
    local name=$1 period=${2:-20} conf=$TEST_TMP/$1.conf
    cp "$ROOT/config/brake.calib" "$TEST_TMP/brake.calib"
    cat >"$conf" <<CONF
ecu
    name = "$name"
    control = "$TEST_TMP/$name/ctl.sock"
    state_dir = "$TEST_TMP/$name/state"
    ram = 256M
    log_lines = 200
    target_dir = "$TARGET_DIR"
targets
    brake
        binary = "brake"
        ram = 16M
        caps = 512
        autostart = 1
        rom
            calibration = "brake.calib"
    logger
        binary = "logger"
        ram = 8M
        caps = 256
        autostart = 1
sensors
    wheel_speed
        line = 5
        period_ms = $period
CONF
    echo "$conf"
}

# control path of a config (ecu/control)
config_control() { sed -n 's/^    control = "\(.*\)".*/\1/p' "$1" | head -1; }

# start_agent NAME CONF [AGENT ARGS...]: start ecu-agent in its own session, in background
start_agent() {
    local name=$1 conf=$2; shift 2
    AGENT_LOG[$name]=$TEST_TMP/$name.log
    AGENT_SOCK[$name]=$(config_control "$conf")
    setsid "$AGENT" -c "$conf" -v "$@" >>"${AGENT_LOG[$name]}" 2>&1 &
    AGENT_PID[$name]=$!
}

# wait_agent NAME [TIMEOUT_S]: until the agent answers `status`; fails if it died
wait_agent() {
    local name=$1 t=${2:-10}
    local end=$((SECONDS + t))
    while [ $SECONDS -lt $end ]; do
        pid_alive "${AGENT_PID[$name]}" || { diag "agent $name died"; show_log "$name"; return 1; }
        "$ECUCTL" -s "${AGENT_SOCK[$name]}" -t 1000 status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    diag "agent $name did not answer within ${t}s"
    show_log "$name"
    return 1
}

# ctl NAME ARGS...: ecuctl against agent NAME
ctl() { local name=$1; shift; "$ECUCTL" -s "${AGENT_SOCK[$name]}" "$@"; }

# field of one target from `ecuctl targets --json`: target_field NAME TARGET FIELD
target_field() { ctl "$1" targets --json | jq -r --arg t "$2" ".[] | select(.name == \$t) | .$3"; }
target_state_is() { [ "$(target_field "$1" "$2" state)" = "$3" ]; }
target_running() { target_state_is "$1" "$2" running; }

# wait_exit NAME [TIMEOUT_S]: wait for the agent to exit; AGENT_RC gets its status
wait_exit() {
    local name=$1 t=${2:-10} p=${AGENT_PID[$1]}
    local end=$((SECONDS + t))
    while pid_alive "$p" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if pid_alive "$p"; then AGENT_RC=timeout; return 1; fi
    wait "$p" 2>/dev/null
    AGENT_RC=$?
    return 0
}

# stop_agent NAME [SIGNAL]: signal (default TERM) and wait; AGENT_RC gets the exit status
stop_agent() {
    kill -"${2:-TERM}" "${AGENT_PID[$1]}" 2>/dev/null
    wait_exit "$1" 15
}

show_log() { [ -f "${AGENT_LOG[$1]:-}" ] && diag "$(tail -n 30 "${AGENT_LOG[$1]}")"; }
