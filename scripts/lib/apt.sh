# shellcheck shell=bash
# Shared by the scripts/install-*.sh scripts: installing Debian packages quietly, as root or through
# sudo, without letting a package start its own service. Source it; the caller defines die().

# Run as root directly, otherwise through sudo (non-interactive: CI has no stdin).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) to run: $*"
  fi
}

APT_UPDATED=0
# apt_install PKG... : quiet apt-get install; shows apt's log only when it fails.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages by hand: $*"
  local log
  log="$(mktemp)"
  # Debian's postinst would start the packaged service (mosquitto on :1883, prometheus on :9090).
  # We never want that (the harness runs its own instances), so deny service starts during the
  # install with a temporary policy-rc.d, unless the machine already has one (containers usually do).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    if as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"; then
      created_policy=1
    fi
  fi
  local rc=0 what="apt-get update"
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] && APT_UPDATED=1
  fi
  if [ "$rc" -eq 0 ]; then
    what="apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 || rc=$?
  fi
  if [ "$created_policy" -eq 1 ]; then
    as_root rm -f "$policy" || true
  fi
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    rm -f "$log"
    die "$what failed (exit $rc)"
  fi
  rm -f "$log"
}
