#!/usr/bin/env bash
# scripts/test-deps.sh — what `make test` needs besides Go, so that on a
# fresh Debian or Ubuntu machine `make test` is the whole set-up:
#
#   redis-server  the tests start their own redis-server processes (the
#                 package also brings redis-cli, for cluster and sentinel set-ups,
#                 and the demo's test, which runs the redis-cli lines it prints)
#   curl          the docs' publishing example and the demo's test run their
#                 own curl lines
#   chromium      the demo's end-to-end test drives its page in headless
#                 Chromium (found as chromium, chromium-browser or
#                 google-chrome on PATH, or at $CHROMIUM_PATH)
#   nginx-light   the reverse-proxy test runs nginx in front of notify (found
#                 as nginx on PATH or /usr/sbin/nginx; where the distribution
#                 has no nginx-light, the nginx package brings the same binary)
#
# Run as root where apt-get exists, it installs what is missing and says
# what. Otherwise it prints the command to run and fails: the tests would
# fail anyway, with a less useful message.
set -euo pipefail

have_chromium() {
	if [ -n "${CHROMIUM_PATH:-}" ]; then
		command -v "$CHROMIUM_PATH" >/dev/null
		return
	fi
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||
		command -v google-chrome >/dev/null
}

have_nginx() {
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
}

missing=()
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
have_chromium || missing+=(chromium)
have_nginx || missing+=(nginx-light)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ -n "${CHROMIUM_PATH:-}" ] && ! have_chromium; then
	echo "test-deps: CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
	exit 1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	{
		echo "test-deps: missing ${missing[*]}; on Debian/Ubuntu, install with:"
		echo
		echo "	sudo apt-get update && sudo apt-get install -y ${missing[*]}"
		echo
		echo "(elsewhere, with your package manager; CHROMIUM_PATH may point at any Chromium or Chrome binary)"
	} >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "test-deps: apt-get update"
apt-get update -qq
# Ubuntu names Chromium's package chromium-browser; newer releases have no
# nginx-light, whose binary is in the nginx package anyway.
for i in "${!missing[@]}"; do
	if [ "${missing[$i]}" = chromium ] && ! apt-cache show chromium >/dev/null 2>&1; then
		missing[$i]=chromium-browser
	fi
	if [ "${missing[$i]}" = nginx-light ] && ! apt-cache show nginx-light >/dev/null 2>&1; then
		missing[$i]=nginx
	fi
done
echo "test-deps: apt-get install -y ${missing[*]}"
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "test-deps: installed ${missing[*]}"
