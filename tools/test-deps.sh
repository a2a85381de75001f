#!/usr/bin/env bash
# Installs the system programs the test suite uses (today: the Mosquitto MQTT broker, which the
# MQTT tests start on a free port of their own). Called by `make test`; safe to run again.
# Where it cannot install (no root, no passwordless sudo, no apt, no network) it says so in one
# sentence and exits 0: the tests that need the program skip, naming it.
set -u
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
    echo "parcelguard: could not install ${need[*]} (needs root or passwordless sudo; try: sudo apt-get install -y ${need[*]}); the tests that use it will be skipped."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "parcelguard: could not install ${need[*]} (no apt-get on this machine; install it with your package manager); the tests that use it will be skipped."
    exit 0
fi
log=$(mktemp)
if { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
    echo "parcelguard: installed ${need[*]} for the tests."
else
    echo "parcelguard: could not install ${need[*]} with apt-get ($(tail -n 1 "$log")); the tests that use it will be skipped."
fi
rm -f "$log"
exit 0
