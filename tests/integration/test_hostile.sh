#!/usr/bin/env bash
# A hostile target next to brake on one ECU: every attack on its kernel interface and its
# parent (garbage in the UTCB, forged and out-of-range capability arguments, map items to
# core, malformed strings, unknown services and opcodes) is refused with an error; its RAM
# quota and capability limit are enforced with clear errors in the agent's log; and neither
# the agent nor brake is harmed — all three keep being served.
. "$(dirname "$0")/lib.sh"
require_build

conf=$(write_config ecu1)
# the hostile target, with a small RAM quota and capability limit
sed -i 's/^sensors$/    hostile\n        binary = "hostile"\n        ram = 6M\n        caps = 96\n        autostart = 1\nsensors/' "$conf"

start_agent ecu1 "$conf"
wait_agent ecu1 || bail "agent did not come up"
eventually 10 target_running ecu1 hostile || { show_log ecu1; bail "hostile not running"; }

hlog() { ctl ecu1 log hostile --json | jq -r '.[]'; }
eventually 10 bash -c "$(declare -f ctl hlog); $(declare -p AGENT_SOCK ECUCTL); hlog | grep -qx 'done'" ||
    { diag "$(hlog)"; bail "hostile did not finish its attacks"; }
lines=$(hlog)

# every attack line ends in a negative result
attacks=$(grep -c -- ' -> ' <<<"$lines")
refused=$(grep -cE -- ' -> -[0-9]+$' <<<"$lines")
check "hostile ran at least 15 attacks ($attacks)" test "$attacks" -ge 15
check_eq "every attack was refused with an error" "$attacks" "$refused"
for a in "call empty slot 0x300 -> -2" "utcb slot out of range -> -34" \
         "utcb unknown operation -> -38" "utcb 200 words -> -90" "map item to core -> -90" \
         "free the parent as a dataspace -> -91" "slot number 2^40 as argument -> -34" \
         "string length 10^9 -> -74" "session of service 77 -> -2"; do
    check "refused: $a" grep -qF -- "$a" <<<"$lines"
done

# quotas: the cap limit stops it at 96 slots, the RAM quota at 6 MiB, with errors (-EDQUOT)
capl=$(grep -o 'cap limit: [0-9]* sessions then -122' <<<"$lines")
check "cap limit enforced with -EDQUOT ($capl)" test -n "$capl"
raml=$(grep -o 'ram quota: [0-9]* MiB then -122' <<<"$lines")
check "RAM quota enforced with -EDQUOT ($raml)" test -n "$raml"
mib=$(grep -o 'ram quota: [0-9]*' <<<"$raml" | grep -o '[0-9]*$')
check "RAM quota: fewer than 6 one-MiB dataspaces fit in 6 MiB ($mib)" test "${mib:-99}" -lt 6
alog=$(cat "${AGENT_LOG[ecu1]}")
check "agent log names the cap limit" grep -q "capability limit reached: 96 of 96 slots in use" <<<"$alog"
check "agent log names the RAM quota" grep -q "RAM quota exceeded" <<<"$alog"
check "agent log names the bad session args" grep -q "must give ram_quota" <<<"$alog"

# the closed sessions gave their slots back: the hostile target is still served normally
check "hostile keeps being served (alive lines)" \
    eventually 5 bash -c "$(declare -f ctl hlog); $(declare -p AGENT_SOCK ECUCTL); hlog | grep -q 'alive n=3'"
check "hostile still running" target_running ecu1 hostile

# brake and the agent are unharmed
t1=$(ctl ecu1 log brake --json | jq -r '[.[] | select(startswith("tick="))] | last')
sleep 0.5
t2=$(ctl ecu1 log brake --json | jq -r '[.[] | select(startswith("tick="))] | last')
check "brake keeps ticking ($t1 -> $t2)" test "$t1" != "$t2"
check "brake running" target_running ecu1 brake
check "agent answers" ctl ecu1 status

stop_agent ecu1
check_eq "agent exits 0 on SIGTERM" 0 "$AGENT_RC"
done_testing
