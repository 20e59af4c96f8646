#!/usr/bin/env bash
# Make sure the commands the tests and benchmarks run are installed.
#
#   scripts/ensure-tools.sh redis-server clamd h2load
#
# For each command missing from PATH: as root with apt-get, install the Debian package that provides
# it (one `apt-get update` per run, then one `apt-get install` for all of them); otherwise print what
# to install and exit 1. Prints nothing when everything is already there. Safe to run repeatedly.
set -euo pipefail

# Daemons such as clamd live in sbin, which is often not on a non-root user's PATH: installed is installed.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# The Debian package that provides a command. Unknown commands are assumed to share their package's name.
package_for() {
  case "$1" in
    redis-server | redis-cli) echo redis-server ;;
    clamd | clamdscan) echo clamav-daemon ;;
    freshclam) echo clamav-freshclam ;;
    clamscan) echo clamav ;;
    h2load | nghttp) echo nghttp2-client ;;
    promtool) echo prometheus ;;
    *) echo "$1" ;;
  esac
}

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND..." >&2
  exit 2
fi

missing_cmds=()
packages=()
for cmd in "$@"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing_cmds+=("$cmd")
    pkg="$(package_for "$cmd")"
    case " ${packages[*]-} " in
      *" $pkg "*) ;;
      *) packages+=("$pkg") ;;
    esac
  fi
done

[ "${#missing_cmds[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing_cmds[*]}" >&2
  if command -v apt-get >/dev/null 2>&1; then
    echo "install them with: sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2
  else
    echo "install the packages that provide them (Debian/Ubuntu names: ${packages[*]})" >&2
  fi
  exit 1
fi

echo "installing ${packages[*]} (for ${missing_cmds[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

still_missing=()
for cmd in "${missing_cmds[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || still_missing+=("$cmd")
done
if [ "${#still_missing[@]}" -ne 0 ]; then
  echo "still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
