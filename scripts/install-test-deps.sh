#!/bin/sh
# Install the Debian packages the test suite needs (idempotent; run as root).
#   chromium  headless browser for tests/interop (binary /usr/bin/chromium)
#   firefox-esr  headless browser for the restart soaks (binary /usr/bin/firefox-esr)
#   coturn    TURN server for TURN tests (turnserver); the tests start their own with
#             `turnserver -c FILE`, so the packaged service is neither needed nor enabled
#   nftables  packet loss inside test namespaces (nft)
#   iproute2  network namespaces, veth pairs, addresses (ip)
#   conntrack flushing NAT mappings in the NAT test bed (tests/interop/nat.py)
#   redis-server  the signaling server's Redis backend tests (tests/test_signaling_redis.py)
# apt runs only when something is missing, with one `apt-get update` first.
set -eu

PACKAGES="chromium firefox-esr coturn nftables iproute2 conntrack redis-server"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "install-test-deps: all present ($PACKAGES)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing:$missing; run this script as root" >&2
    exit 1
fi

echo "install-test-deps: installing:$missing"
apt-get update
# $missing is a space-separated list of package names: split it on purpose.
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing

# Check that the binaries the tests call are there now.
for bin in /usr/bin/chromium /usr/bin/firefox-esr turnserver nft ip conntrack redis-server; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "install-test-deps: $bin still missing after install" >&2
        exit 1
    fi
done
echo "install-test-deps: done"
