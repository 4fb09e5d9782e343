#!/usr/bin/env bash
# test_ckpt_restore — checkpoint and restore through ecu-agent and ecuctl, with real target
# processes:
#   1. continuity: brake is checkpointed by `ecuctl checkpoint`, killed, and restored by
#      `ecuctl restore`; its tick/irq counters continue from the checkpointed values (not from
#      zero) and keep increasing (timers and IRQs arrive after the restore);
#   2. the cap space after the restore equals the one before, slot by slot and type by type,
#      with new badges for every gate (thread gates at 9 and 12, signal-source IRQs, sessions);
#   3. on_crash = restore: a target killed from outside (kill -9 of its pid) is restored by
#      the agent from its periodic checkpoints and continues;
#   4. damaged images in the state dir, loaded when the agent starts: a corrupt or truncated
#      newest epoch, or a truncated middle epoch, leave a good prefix that the restore uses;
#      a corrupt only full epoch, a foreign target's image and a different binary (build id)
#      are refused with an error naming the epoch/cause; no half-restored target ever runs
#      and the agent keeps running; `ecuctl inspect` reads good files and names the problem of
#      bad ones (exit 1);
#   5. periodic checkpoints every 10 ms: many epochs, the chain stays bounded by 2 x max_chain
#      (compaction in the background, also on disk), every epoch verifies, and brake's tick rate stays ~100/s;
#      `ecuctl targets` and `images` show the compaction's state and the hot standby's epoch.
# Plus the new commands' JSON shapes and errors (checkpoint, restore, images, check, targets).
. "$(dirname "$0")/lib.sh"

require_build

# ---- helpers -------------------------------------------------------------------------------

# brake_set CONF KEY VALUE: set KEY in targets/brake (replacing it if present)
brake_set() {
    local conf=$1 key=$2 value=$3
    if sed -n '/^    brake$/,/^    logger$/p' "$conf" | grep -q "^        $key = "; then
        sed -i "/^    brake$/,/^    logger$/ s|^        $key = .*|        $key = $value|" "$conf"
    else
        sed -i "/^    brake$/a\\        $key = $value" "$conf"
    fi
}
# last "tick=N irq=M" line of brake from `ecuctl log brake --json` (empty if none)
last_tick_line() { ctl "$1" log brake --json | jq -r '[.[] | select(startswith("tick="))] | last // ""'; }
tick_of() { [[ $1 =~ tick=([0-9]+) ]] && echo "${BASH_REMATCH[1]}"; }
irq_of() { [[ $1 =~ irq=([0-9]+) ]] && echo "${BASH_REMATCH[1]}"; }
tick_at_least() { local t; t=$(tick_of "$(last_tick_line "$1")"); [ -n "$t" ] && [ "$t" -ge "$2" ]; }
# first brake tick line in the agent's log after its last "restored from epoch" notice
first_tick_after_restore() {
    awk '/target .brake. restored from epoch/ { f = 1; line = ""; next }
         f && line == "" && /brake: tick=/ { line = $0 } END { print line }' "${AGENT_LOG[$1]}"
}
has_tick_after_restore() { [ -n "$(first_tick_after_restore "$1")" ]; }
caps_shape() { jq -c '[.[] | [.slot, .type, .object]]'; }
now_s() { date +%s.%N; }
pid_of_brake() { target_field "$1" brake pid; }
brake_pid_changed() { local p; p=$(pid_of_brake "$1"); [ -n "$p" ] && [ "$p" != null ] && [ "$p" != "$2" ]; }
fail_body() { diag "$1"; return 1; }

# ================================================================================================
# 1 + 2: manual checkpoint, kill, restore; counters continue; cap space equal
# ================================================================================================
conf=$(write_config ecu1)
start_agent ecu1 "$conf"
check "agent starts" wait_agent ecu1 || { done_testing; exit 1; }
check "brake runs" eventually 5 target_running ecu1 brake
track_pid "$(pid_of_brake ecu1)" "$(target_field ecu1 logger pid)"
check "brake reaches tick >= 30" eventually 10 tick_at_least ecu1 30
# the construct's line, as the agent logs it; seen here so that the check after the restore
# that it does not appear again cannot pass because the pattern matches nothing
check "the fresh brake logged its construct line ('brake: started')" \
    grep -q 'brake: started' "${AGENT_LOG[ecu1]}"

# `check`: what the ECU supports
json=$(ctl ecu1 check --json)
diag "check: $json"
check "check --json: dirty tracking mode, kernel, futex_waitv, writable state dir" \
    jq_true "$json" '(.dirty_tracking.mode | IN("uffd-wp", "hash", "full")) and
                     (.kernel | startswith("Linux ")) and (.futex_waitv | type == "boolean") and
                     .state_dir.writable == true and .state_dir.path == $d and
                     any(.targets[]; .name == "brake" and .dirty_tracking == "auto")' \
    --arg d "$TEST_TMP/ecu1/state"
check "check text names the dirty-tracking mode and the state dir" \
    bash -c "'$ECUCTL' -s '${AGENT_SOCK[ecu1]}' check | grep -Eq '^dirty tracking: +(uffd-wp|hash)' &&
             '$ECUCTL' -s '${AGENT_SOCK[ecu1]}' check | grep -q '(writable)'"

before_line=$(last_tick_line ecu1)
ckpt=$(ctl ecu1 checkpoint brake --json)
check_eq "checkpoint brake exits 0" 0 "$?"
diag "checkpoint: $ckpt (last log line before it: $before_line)"
ckpt_tick=$(tick_of "$before_line")
ckpt_irq=$(irq_of "$before_line")
ckpt_epoch=$(jq -r .epoch <<<"$ckpt")
check "checkpoint --json: epoch 1, full, with every statistic" \
    jq_true "$ckpt" '.target == "brake" and .epoch == 1 and .full == true and
                     all(.quiesce_usec, .freeze_usec, .pages_scanned, .pages_written, .bytes_raw,
                         .bytes_stored, .encode_usec, .encode_cpu_usec, .write_usec;
                         type == "number") and
                     all(.encoded_idle, .idle_capped; type == "boolean") and
                     .encode_cpu_usec <= .encode_usec + 2 and
                     .pages_written > 0 and .bytes_stored > 0'
text=$(ctl ecu1 checkpoint brake)
check "checkpoint text: second epoch is incremental, CRIU-style statistics" \
    all_match "$text" "^checkpoint of 'brake': epoch 2 \(incremental\)$" \
    '^  quiesce: +[0-9.]+(us|ms)$' '^  freeze \(pause\): +[0-9.]+(us|ms)$' \
    '^  pages scanned: +[0-9]+$' '^  pages written: +[0-9]+$' '^  bytes raw: +[0-9]+ ' \
    '^  bytes stored: +[0-9]+ ' '^  encode: +[0-9.]+(us|ms)$' \
    '^  encode CPU: +[0-9.]+(us|ms)( \((at|began at) idle priority[a-z ,]*\))?$' \
    '^  write: +[0-9.]+(us|ms)$'
check "epoch files are written to STATE_DIR/brake/" \
    test -s "$TEST_TMP/ecu1/state/brake/epoch-00000002.rtcr"
check_eq "the per-target state dir is mode 0750" 750 "$(stat -c %a "$TEST_TMP/ecu1/state/brake")"

# take the restore point: a third epoch, with the log line just before it
before_line=$(last_tick_line ecu1)
ckpt=$(ctl ecu1 checkpoint brake --json)
ckpt_tick=$(tick_of "$before_line")
ckpt_irq=$(irq_of "$before_line")
ckpt_epoch=$(jq -r .epoch <<<"$ckpt")
caps_before=$(ctl ecu1 caps brake --json)
diag "restore point: epoch $ckpt_epoch, tick $ckpt_tick, irq $ckpt_irq"

json=$(ctl ecu1 targets --json)
check "targets --json: last_epoch of brake with its statistics, null for logger" \
    jq_true "$json" '(.[] | select(.name == "brake") | .last_epoch |
                      .epoch == $e and .full == false and
                      all(.freeze_usec, .pages_scanned, .pages_written, .bytes_raw,
                          .bytes_stored, .encode_usec, .encode_cpu_usec; type == "number") and
                      (.encoded_idle | type == "boolean"))
                     and (.[] | select(.name == "logger") | .last_epoch == null)' \
    --argjson e "$ckpt_epoch"
check "targets text: LAST EPOCH column (epoch N pause Xus N pages)" \
    bash -c "'$ECUCTL' -s '${AGENT_SOCK[ecu1]}' targets | grep -Eq '^NAME +STATE +PID +RESTARTS +RAM +LAST EPOCH +FAILURE$' &&
             '$ECUCTL' -s '${AGENT_SOCK[ecu1]}' targets | grep -Eq '^brake +running .* epoch $ckpt_epoch pause [0-9.]+(us|ms) [0-9]+ pages? +-$'"

json=$(ctl ecu1 images brake --json)
check "images --json: epochs 1..3, kinds, parents, sizes, all verified" \
    jq_true "$json" 'length == 3 and [.[].epoch] == [1, 2, 3] and .[0].kind == "full" and
                     .[0].parent == null and .[1].kind == "incremental" and .[1].parent == 1 and
                     .[2].parent == 2 and all(.[]; .verified == true and .error == null and
                     .bytes > 0 and (.pages_written | type == "number") and
                     (.pages_zero | type == "number") and (.freeze_usec | type == "number") and
                     (.encode_usec | type == "number") and .created_usec > 0 and
                     (.created | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")))'
check "images text: header and one verified line per epoch, created in UTC (ISO 8601)" \
    bash -c "out=\$('$ECUCTL' -s '${AGENT_SOCK[ecu1]}' images brake);
             grep -Eq '^EPOCH +KIND +PARENT +SIZE +PAGES +ZERO +FREEZE +ENCODE +CREATED +VERIFIED$' <<<\"\$out\" &&
             [ \$(grep -Ec '^[123] +(full|incremental) .* [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z +yes$' <<<\"\$out\") = 3 ]"

err=$(ctl ecu1 restore brake 2>&1 >/dev/null)
check_eq "restore of a running target: exit 1" 1 "$?"
check "restore of a running target: says to stop or kill it first" \
    grep -q "target 'brake' is running: stop or kill it first" <<<"$err"

bpid=$(pid_of_brake ecu1)
check "kill brake" ctl ecu1 kill brake
check "brake is reported failed" eventually 5 target_state_is ecu1 brake failed
err=$(ctl ecu1 checkpoint brake 2>&1 >/dev/null)
check_eq "checkpoint of a failed target: exit 1" 1 "$?"
check "checkpoint of a failed target: says it is not running" grep -q "not running" <<<"$err"
err=$(ctl ecu1 restore brake --epoch 99 2>&1 >/dev/null)
check_eq "restore --epoch 99 (not in the image): exit 1" 1 "$?"
check "restore of a missing epoch names it and the epochs held" \
    grep -q "epoch 99: no such epoch (image holds 1..3)" <<<"$err"
check "the failed restore started nothing" target_state_is ecu1 brake failed

out=$(ctl ecu1 restore brake --json)
check_eq "restore brake exits 0" 0 "$?"
diag "restore: $out"
check "restore --json: the newest epoch, with a pid" \
    jq_true "$out" '.target == "brake" and .action == "restored" and .epoch == $e and .pid > 0' \
    --argjson e "$ckpt_epoch"
track_pid "$(jq -r .pid <<<"$out")"
check "brake runs again after the restore" eventually 5 target_running ecu1 brake
check "the restored brake is a new process" brake_pid_changed ecu1 "$bpid"
check "the agent logged the restore with its epoch and duration" \
    grep -Eq "target 'brake' restored from epoch $ckpt_epoch in [0-9.]+ ms" "${AGENT_LOG[ecu1]}"
check "the restored brake logs tick lines" eventually 5 has_tick_after_restore ecu1
first=$(first_tick_after_restore ecu1)
diag "first tick line after restore: $first"
first_tick=$(tick_of "$first")
first_irq=$(irq_of "$first")
check "continuity: the first tick after restore ($first_tick) >= the checkpointed tick ($ckpt_tick)" \
    test "${first_tick:-0}" -ge "${ckpt_tick:-1}"
check "continuity: the first irq count after restore ($first_irq) >= the checkpointed one ($ckpt_irq)" \
    test "${first_irq:-0}" -ge "${ckpt_irq:-1}"
check "continuity: no fresh start (no 'started' line after the restore)" \
    bash -c "! awk '/restored from epoch/ { f = 1 } f' '${AGENT_LOG[ecu1]}' | grep -q 'brake: started'"
sleep 1.5
last=$(last_tick_line ecu1)
diag "1.5 s later: $last"
check "timers keep arriving after the restore (tick grows by >= 50 in 1.5 s)" \
    test "$(tick_of "$last")" -ge $((first_tick + 50))
check "IRQs keep arriving after the restore (irq grows by >= 20 in 1.5 s)" \
    test "$(irq_of "$last")" -ge $((first_irq + 20))

# --- 2: the cap space ----------------------------------------------------------------------------
caps_after=$(ctl ecu1 caps brake --json)
check_eq "cap space after restore: same slots, types and objects as before" \
    "$(caps_shape <<<"$caps_before")" "$(caps_shape <<<"$caps_after")"
check "cap space: [slot, type] lists equal" \
    test "$(jq -c '[.[] | [.slot, .type]]' <<<"$caps_before")" = \
    "$(jq -c '[.[] | [.slot, .type]]' <<<"$caps_after")"
same=$(jq -n --argjson a "$caps_before" --argjson b "$caps_after" \
    '[$a[] | select(.type == "gate") as $g | $b[] | select(.slot == $g.slot and .badge == $g.badge)] | length')
ngates=$(jq '[.[] | select(.type == "gate")] | length' <<<"$caps_after")
check "every gate has a new badge after restore ($ngates gates, $same unchanged)" \
    test "$same" = 0 -a "$ngates" -gt 10
check "restored cap space holds the thread gates at 9 and 12, the lock IRQs at 11 and 14" \
    jq_true "$caps_after" 'any(.[]; .slot == 9 and .type == "gate") and
                           any(.[]; .slot == 12 and .type == "gate") and
                           any(.[]; .slot == 11 and .type == "irq") and
                           any(.[]; .slot == 14 and .type == "irq")'
check "restored cap space holds the signal sources (IRQs), the IRQ, Timer and LOG sessions" \
    jq_true "$caps_after" '([.[] | select(.type == "irq" and (.object | startswith("signal source")))] | length) == 2
                           and any(.[]; .type == "gate" and .object == "IRQ session line 5")
                           and any(.[]; .type == "gate" and (.object | startswith("Timer session")))
                           and any(.[]; .type == "gate" and (.object | startswith("LOG session")))
                           and any(.[]; .type == "gate" and .object == "RPC object of ep 1")'
check "logger was not disturbed" target_running ecu1 logger
stop_agent ecu1
check_eq "ecu1 exits 0" 0 "$AGENT_RC"

# ================================================================================================
# 3: on_crash = restore with periodic checkpoints
# ================================================================================================
conf=$(write_config ecu2)
brake_set "$conf" checkpoint_ms 50
brake_set "$conf" on_crash restore
start_agent ecu2 "$conf"
check "ecu2 (checkpoint_ms 50, on_crash restore) starts" wait_agent ecu2 || { done_testing; exit 1; }
check "brake runs on ecu2" eventually 5 target_running ecu2 brake
track_pid "$(pid_of_brake ecu2)" "$(target_field ecu2 logger pid)"
check "brake reaches tick >= 40" eventually 10 tick_at_least ecu2 40
has_periodic() { [ "$(target_field ecu2 brake last_epoch.epoch)" -ge 5 ] 2>/dev/null; }
check "periodic checkpoints are being taken (last_epoch.epoch >= 5)" eventually 5 has_periodic
# on_crash = restore keeps a hot standby: it holds the newest epoch (one reply, one state)
json=$(ctl ecu2 targets --json)
diag "brake's standby and compaction: $(jq -c '.[] | select(.name == "brake") | [.standby, .compaction]' <<<"$json")"
check "targets --json: brake's standby is ready at its newest epoch, numbers as numbers" \
    jq_true "$json" '.[] | select(.name == "brake") | .standby.enabled == true and
                     .standby.ready == true and .standby.epoch == .last_epoch.epoch and
                     (.standby.bytes | type == "number") and .standby.bytes > 0 and
                     .standby.why == null and .standby.last_restore == "none"'
check "targets --json: compaction object with every field (max_chain 64: none yet)" \
    jq_true "$json" '.[] | select(.name == "brake") | .compaction | .max_chain == 64 and
                     (.chain_epochs | type == "number") and .chain_epochs >= 5 and
                     .running == false and .running_from == null and .last == "none" and
                     .last_upto == null and .started == 0 and .committed == 0 and
                     .failed == 0 and .discarded == 0 and .error == null'
check "targets text: brake's detail line shows the chain and the standby's epoch" \
    all_match "$(ctl ecu2 targets)" \
    '^  chain [0-9]+ epochs \(max 64\), no compaction yet; standby: epoch [0-9]+$'
bpid=$(pid_of_brake ecu2)
kill_line=$(last_tick_line ecu2)
kill -KILL "$bpid"
diag "killed brake pid $bpid at $kill_line"
check "the agent restores brake by itself (new pid, running)" \
    eventually 5 brake_pid_changed ecu2 "$bpid"
track_pid "$(pid_of_brake ecu2)"
check "brake is running after the automatic restore" eventually 5 target_running ecu2 brake
check "the agent logged the crash and the on_crash restore" \
    bash -c "grep -q \"target 'brake' failed: killed by signal 9\" '${AGENT_LOG[ecu2]}' &&
             grep -Eq \"target 'brake' restored from epoch [0-9]+ in [0-9.]+ ms \\(on_crash=restore\\)\" '${AGENT_LOG[ecu2]}'"
check "the restored brake logs tick lines" eventually 5 has_tick_after_restore ecu2
first=$(first_tick_after_restore ecu2)
diag "first tick after the automatic restore: $first"
kill_tick=$(tick_of "$kill_line")
check "continuity: first tick after restore ($(tick_of "$first")) >= tick at kill ($kill_tick) - 20" \
    test "$(tick_of "$first")" -ge $((kill_tick - 20))
sleep 1
last=$(last_tick_line ecu2)
check "ticks continue past the kill point" test "$(tick_of "$last")" -gt "$kill_tick"
check "irqs continue after the automatic restore" test "$(irq_of "$last")" -gt "$(irq_of "$first")"
check "the restore is counted by the standby (taken or decoded)" \
    jq_true "$(ctl ecu2 targets --json)" '.[] | select(.name == "brake") |
        .standby.last_restore | IN("standby", "decode")'
check "periodic checkpoints resume on the restored brake" \
    eventually 3 bash -c "[ \"\$('$ECUCTL' -s '${AGENT_SOCK[ecu2]}' targets --json |
        jq '.[] | select(.name == \"brake\") | .restarts')\" = 1 ] &&
        '$ECUCTL' -s '${AGENT_SOCK[ecu2]}' images brake --json | jq -e 'length >= 2' >/dev/null"
stop_agent ecu2
check_eq "ecu2 exits 0" 0 "$AGENT_RC"

# ================================================================================================
# 4: damaged and foreign images in the state dir
# ================================================================================================
conf=$(write_config ecu3)
brake_set "$conf" autostart 0
state=$TEST_TMP/ecu3/state
start_agent ecu3 "$conf"
check "ecu3 starts" wait_agent ecu3 || { done_testing; exit 1; }
check "start brake" ctl ecu3 start brake
check "brake runs on ecu3" eventually 5 target_running ecu3 brake
track_pid "$(pid_of_brake ecu3)" "$(target_field ecu3 logger pid)"
check "brake reaches tick >= 20" eventually 10 tick_at_least ecu3 20
declare -a epoch_tick=()
for e in 1 2 3; do
    epoch_tick[$e]=$(tick_of "$(last_tick_line ecu3)")
    ctl ecu3 checkpoint brake >/dev/null || not_ok "checkpoint $e on ecu3"
    sleep 0.3
done
diag "ticks before epochs 1..3: ${epoch_tick[*]}"
check "checkpoint logger (for the foreign-image case)" ctl ecu3 checkpoint logger
stop_agent ecu3
check_eq "ecu3 exits 0" 0 "$AGENT_RC"
check "three epoch files of brake" test -s "$state/brake/epoch-00000003.rtcr"
mkdir -p "$TEST_TMP/good"
cp -a "$state/brake" "$TEST_TMP/good/brake"

# restore_from NAME EPOCH: `ecuctl restore` uses exactly EPOCH, brake runs, ticks >= the
# tick logged before that epoch was taken
restore_case() {
    local what=$1 want=$2 out
    start_agent ecu3 "$conf"
    wait_agent ecu3 || { not_ok "$what: agent starts"; return; }
    out=$(ctl ecu3 restore brake --json)
    check_eq "$what: restore exits 0 (uses the good prefix)" 0 "$?"
    diag "$what: $out"
    check_eq "$what: restored from epoch $want" "$want" "$(jq -r .epoch <<<"$out")"
    check "$what: the reply notes what was dropped" \
        jq_true "$out" '.note | type == "string" and test("epoch [0-9]+")'
    track_pid "$(jq -r .pid <<<"$out")"
    check "$what: brake runs" eventually 5 target_running ecu3 brake
    check "$what: brake logs ticks" eventually 5 has_tick_after_restore ecu3
    local f
    f=$(tick_of "$(first_tick_after_restore ecu3)")
    check "$what: first tick ($f) >= the tick before epoch $want (${epoch_tick[$want]})" \
        test "${f:-0}" -ge "${epoch_tick[$want]}"
    stop_agent ecu3
    check_eq "$what: agent exits 0" 0 "$AGENT_RC"
}

# refuse_case WHAT REGEX: `ecuctl restore` fails naming the cause; nothing runs; agent lives
refuse_case() {
    local what=$1 re=$2 err rc
    start_agent ecu3 "$conf"
    wait_agent ecu3 || { not_ok "$what: agent starts"; return; }
    err=$(ctl ecu3 restore brake 2>&1 >/dev/null)
    rc=$?
    diag "$what: $err"
    check_eq "$what: restore refused (exit 1)" 1 "$rc"
    check "$what: the error names the cause ($re)" grep -Eq -- "$re" <<<"$err"
    check "$what: no brake process was started" \
        jq_true "$(ctl ecu3 targets --json)" '.[] | select(.name == "brake") | .pid == null and .state != "running"'
    check "$what: the agent keeps running" ctl ecu3 status
    stop_agent ecu3
    check_eq "$what: agent exits 0" 0 "$AGENT_RC"
}

# (a) one corrupt byte in the newest epoch: epochs 1..2 remain
f3=$state/brake/epoch-00000003.rtcr
size=$(stat -c %s "$f3")
printf '\xa5' | dd of="$f3" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
err=$("$ECUCTL" inspect "$f3" 2>&1 >/dev/null)
check_eq "inspect of the corrupt epoch: exit 1" 1 "$?"
check "inspect names the file and the problem" \
    grep -Eq "epoch-00000003.rtcr: not a valid epoch: .*(hash mismatch|corrupt|does not|bad)" <<<"$err"
diag "inspect: $err"
restore_case "corrupt newest epoch" 2
check "the agent warned about the dropped epoch at start" \
    grep -Eq "only a prefix of the image is usable: .*epoch 3" "${AGENT_LOG[ecu3]}"

# (b) the newest epoch truncated (as by a power cut during a copy): epochs 1..2 remain
rm -rf "$state/brake" && cp -a "$TEST_TMP/good/brake" "$state/brake"
truncate -s $(($(stat -c %s "$f3") / 3)) "$f3"
restore_case "truncated newest epoch" 2

# (c) the middle epoch truncated: only epoch 1 remains
rm -rf "$state/brake" && cp -a "$TEST_TMP/good/brake" "$state/brake"
f2=$state/brake/epoch-00000002.rtcr
truncate -s $(($(stat -c %s "$f2") / 2)) "$f2"
err=$("$ECUCTL" inspect "$f2" 2>&1 >/dev/null)
check_eq "inspect of the truncated epoch: exit 1" 1 "$?"
check "inspect of the truncated epoch names the problem" grep -q "epoch-00000002.rtcr: not a valid epoch: " <<<"$err"
restore_case "truncated middle epoch" 1

# (d) the only full epoch corrupt: nothing usable
rm -rf "$state/brake" && cp -a "$TEST_TMP/good/brake" "$state/brake"
f1=$state/brake/epoch-00000001.rtcr
printf '\x5a' | dd of="$f1" bs=1 seek=$(($(stat -c %s "$f1") / 2)) conv=notrunc 2>/dev/null
refuse_case "corrupt full epoch" "no usable checkpoint image .*epoch 1: "

# (e) a foreign target's image under brake's name
rm -rf "$state/brake" && cp -a "$state/logger" "$state/brake"
refuse_case "logger's image as brake's" "belongs to target 'logger'"

# (f) the right image, but brake's binary is now another program (build id differs)
rm -rf "$state/brake" && cp -a "$TEST_TMP/good/brake" "$state/brake"
mkdir -p "$TEST_TMP/otherbin"
cp "$TARGET_DIR/logger" "$TEST_TMP/otherbin/brake"
sed -i "s|^        binary = \"brake\"|        binary = \"$TEST_TMP/otherbin/brake\"|" "$conf"
refuse_case "different binary" "build id"
sed -i "s|^        binary = \"$TEST_TMP/otherbin/brake\"|        binary = \"brake\"|" "$conf"

# inspect of good files and of an image directory
out=$("$ECUCTL" inspect "$TEST_TMP/good/brake/epoch-00000001.rtcr")
check_eq "inspect of a good epoch: exit 0" 0 "$?"
check "inspect shows header, sessions, cap space and regions" \
    all_match "$out" "^epoch 1 of 'brake': full" '^sessions \(' '^cap space \(' 'IRQ' \
    'line 5' 'at 0x[0-9a-f]+ size [0-9]+ ds' 'slot +9 .* gate'
check "inspect shows the creation time in UTC (ISO 8601 with milliseconds)" \
    all_match "$out" "^  created [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z on ECU 'ecu3' "
out=$("$ECUCTL" inspect "$TEST_TMP/good/brake")
check_eq "inspect of an image dir: exit 0" 0 "$?"
check "inspect of an image dir lists its epochs" all_match "$out" "^target 'brake': 3 epoch"
"$ECUCTL" inspect "$TEST_TMP/nonexistent.rtcr" >/dev/null 2>&1
check_eq "inspect of a missing file: exit 1" 1 "$?"
"$ECUCTL" inspect >/dev/null 2>&1
check_eq "inspect without a file: usage exit 2" 2 "$?"

# bad checkpoint keys are refused with file and key
bad=$TEST_TMP/bad.conf
cp "$conf" "$bad"
brake_set "$bad" checkpoint_ms 5
err=$("$AGENT" -c "$bad" --check 2>&1)
check "checkpoint_ms = 5: refused naming file and key" \
    grep -q "bad.conf: targets/brake/checkpoint_ms: 5 ms is too short" <<<"$err"
cp "$conf" "$bad"
brake_set "$bad" on_crash reboot
err=$("$AGENT" -c "$bad" --check 2>&1)
check "on_crash = reboot: refused naming file and key" \
    grep -q 'bad.conf: targets/brake/on_crash: "reboot" is not a crash policy' <<<"$err"

# ================================================================================================
# 5: periodic checkpoints every 10 ms, chain bounded by max_chain
# ================================================================================================
conf=$(write_config ecu4)
brake_set "$conf" checkpoint_ms 10
brake_set "$conf" max_chain 16
start_agent ecu4 "$conf"
check "ecu4 (checkpoint_ms 10, max_chain 16) starts" wait_agent ecu4 || { done_testing; exit 1; }
check "brake runs on ecu4" eventually 5 target_running ecu4 brake
track_pid "$(pid_of_brake ecu4)" "$(target_field ecu4 logger pid)"
check "brake reaches tick >= 20" eventually 10 tick_at_least ecu4 20
t0=$(now_s)
k0=$(tick_of "$(last_tick_line ecu4)")
e0=$(target_field ecu4 brake last_epoch.epoch)
sleep 3
t1=$(now_s)
k1=$(tick_of "$(last_tick_line ecu4)")
e1=$(target_field ecu4 brake last_epoch.epoch)
rate=$(awk -v a="$k0" -v b="$k1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%d", (b - a) / (e - s) }')
erate=$(awk -v a="$e0" -v b="$e1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%d", (b - a) / (e - s) }')
diag "over $(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.2f", e - s }') s: ticks $k0 -> $k1 ($rate/s), epochs $e0 -> $e1 ($erate/s)"
check "many epochs: at least 30 per second at checkpoint_ms 10 ($erate/s)" test "$erate" -ge 30
check "brake's tick rate is not visibly disturbed: 70..130 per second ($rate/s)" \
    test "$rate" -ge 70 -a "$rate" -le 130
json=$(ctl ecu4 images brake --json)
n=$(jq length <<<"$json")
diag "images: $n epochs, $(jq -c '[.[0].epoch, .[0].kind, .[0].compacted_from, .[-1].epoch]' <<<"$json")"
check "the chain stays bounded by 2 x max_chain while compaction runs in the background (1..32 epochs held: $n)" \
    test "$n" -ge 1 -a "$n" -le 32
check "the chain base is a compacted full epoch, the rest incremental, all verified" \
    jq_true "$json" '.[0].kind == "full" and (.[0].compacted_from | type == "number") and
                     all(.[1:][]; .kind == "incremental") and all(.[]; .verified)'
nfiles=$(find "$TEST_TMP/ecu4/state/brake" -name 'epoch-*.rtcr' | wc -l)
check "compaction also prunes the files (at most 33 epoch files: $nfiles)" test "$nfiles" -le 33
check "no periodic checkpoint failure was logged" \
    bash -c "! grep -q 'periodic checkpoint of .brake. failed' '${AGENT_LOG[ecu4]}'"
json=$(ctl ecu4 targets --json)
diag "brake's compaction: $(jq -c '.[] | select(.name == "brake") | .compaction' <<<"$json")"
check "targets --json: compactions committed, none failed, the chain within 2 x max_chain" \
    jq_true "$json" '.[] | select(.name == "brake") | .compaction | .max_chain == 16 and
                     .committed >= 1 and .failed == 0 and .error == null and
                     .started >= .committed + .discarded and
                     (.chain_epochs >= 1 and .chain_epochs <= 32) and
                     ((.running == true and (.running_upto | type == "number")) or
                      (.running == false and .running_upto == null)) and
                     (.last | IN("committed", "discarded"))'
check "targets --json: no standby without on_crash = restore" \
    jq_true "$json" '.[] | select(.name == "brake") | .standby.enabled == false and
                     .standby.ready == false and .standby.epoch == null and
                     .standby.why == "disabled"'
check "targets text: brake's detail line shows the chain, the compaction and the standby" \
    all_match "$(ctl ecu4 targets)" \
    '^  chain [0-9]+ epochs? \(max 16\), (compaction running \([0-9]+\.\.[0-9]+, [0-9.]+m?s(, on kept memory)?\)|last compaction [0-9]+\.\.[0-9]+ (committed|discarded)).*; standby: disabled$'
check "images text: footer with the standby and the compaction counters" \
    all_match "$(ctl ecu4 images brake)" '^standby: disabled$' \
    '^compaction: .*; [0-9]+ started, [1-9][0-9]* committed, 0 failed, [0-9]+ discarded \(max chain 16\)$'
check "targets shows the last epoch" \
    bash -c "'$ECUCTL' -s '${AGENT_SOCK[ecu4]}' targets | grep -Eq '^brake +running .* epoch [0-9]+ pause '"
check "logger unaffected on ecu4" target_running ecu4 logger
stop_agent ecu4
check_eq "ecu4 exits 0" 0 "$AGENT_RC"

done_testing
