#!/usr/bin/env bash
# Install (as root) or name (otherwise) the Debian 12 packages RTCR needs to build and test.
# Called by `make deps`, which `make demo` and `make test` depend on.
set -euo pipefail

# package -> what proves it is present (a pkg-config module or a command)
declare -A need=(
    [pkg-config]="cmd:pkg-config"
    [libzmq3-dev]="pc:libzmq"
    [libczmq-dev]="pc:libczmq"
    [liblz4-dev]="pc:liblz4"
    [libxxhash-dev]="pc:libxxhash"
    [libsystemd-dev]="pc:libsystemd"
    [libprotobuf-c-dev]="pc:libprotobuf-c"
    [protobuf-c-compiler]="cmd:protoc-c"
    [libcmocka-dev]="pc:cmocka"
    [valgrind]="cmd:valgrind"
    [jq]="cmd:jq"
    [iproute2]="cmd:ip"
    [nftables]="cmd:nft"
    [procps]="cmd:pgrep"
)

missing=()
for pkg in "${!need[@]}"; do
    probe=${need[$pkg]}
    case $probe in
        cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$pkg") ;;
        pc:*) command -v pkg-config >/dev/null 2>&1 &&
                  pkg-config --exists "${probe#pc:}" || missing+=("$pkg") ;;
    esac
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
