#!/bin/sh
# neopro-runtime migration: hands a box over from the Node.js sync agent to
# neopro-runtime, with no SSH. Shipped in NEOPRO_ROOT/sync-agent/neopro-runtime/
# by the migration bundle (`cargo xtask migration-bundle`), which the Node
# agent installs through its own update_software. When it restarts itself,
# its `require('./commands')` loads the bundle's sync-agent/src/commands.js,
# which starts this script as root in its own transient unit
# (`sudo systemd-run --unit=neopro-handover`): it outlives the old unit it
# stops.
#
# Steps: check the package fits this box; stop the Node agent; install the
# .deb (its postinst runs `install-service` because /etc/neopro/site.conf
# exists: same site, same key, no re-registration); wait until the new agent
# has authenticated with the central; then disable the Node agent. Any
# failure, or no authentication within MIGRATION_DEADLINE_SECS (site.conf,
# default 300), puts the Node agent back: neopro-runtime stopped and
# disabled, the shim removed (the Node agent's own files were never
# changed), the old unit enabled and started, and the reason written to its
# log. Videos, configuration.json and backups are never touched.
#
# Values from site.conf are read with sed, never sourced: nothing in it runs.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SYNC=$(dirname "$HERE")
OLD=neopro-sync-agent
NEW=neopro-runtime
SITE_CONF=${NEOPRO_SITE_CONF:-/etc/neopro/site.conf}
SHIM="$SYNC/src/commands.js"
DONE="$HERE/handover-done"

conf() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$SITE_CONF" 2>/dev/null \
    | tail -n 1 | sed 's/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/'
}

STATE=$(conf STATE_PATH)
[ -n "$STATE" ] || STATE=/var/lib/neopro-runtime
# The running agent's link status lives in the unit's tmpfs (RuntimeDirectory).
RUNTIME=$(conf RUNTIME_PATH)
[ -n "$RUNTIME" ] || RUNTIME=/run/neopro-runtime
LOGFILE=$(conf LOG_PATH)
[ -n "$LOGFILE" ] || LOGFILE="$(dirname "$SYNC")/logs/sync-agent.log"

log() {
  echo "neopro handover: $*"
  printf '%s [neopro-runtime handover] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$LOGFILE" 2>/dev/null || true
}

# Puts the Node agent back and says why.
give_back() {
  log "moving to neopro-runtime failed: $1; the Node.js agent ($OLD) is started again"
  if systemctl cat "$NEW.service" >/dev/null 2>&1; then
    systemctl disable --now "$NEW.service" >/dev/null 2>&1 || true
  fi
  rm -f "$STATE/took-over.json"
  # install-service gives site.conf to the agent's user (0600): the Node
  # agent reads it as it did before.
  if [ -n "${CONF_OWNER:-}" ]; then
    chown "$CONF_OWNER" "$SITE_CONF" && chmod "$CONF_MODE" "$SITE_CONF" || true
  fi
  rm -f "$SHIM"
  printf 'rolled back: %s\n' "$1" >"$DONE"
  systemctl enable "$OLD.service" >/dev/null 2>&1 || true
  systemctl start "$OLD.service" || log "systemctl start $OLD failed"
  exit 1
}

if [ -e "$DONE" ]; then
  log "already done ($(head -n 1 "$DONE")); nothing to do"
  exit 0
fi
log "taking the box over from the Node.js agent"

DEB=
for f in "$HERE"/neopro-runtime_*.deb; do
  [ -f "$f" ] && DEB=$f
done
[ -n "$DEB" ] || give_back "no neopro-runtime .deb in $HERE"
WANT=$(dpkg-deb -f "$DEB" Architecture 2>/dev/null) || give_back "$DEB is not a readable package"
HAVE=$(dpkg --print-architecture)
[ "$WANT" = "$HAVE" ] || give_back "the bundle is for $WANT, this box is $HAVE"
[ -n "$(conf SITE_ID)" ] && [ -n "$(conf SITE_API_KEY)" ] \
  || give_back "$SITE_CONF has no SITE_ID or SITE_API_KEY (the box is not registered)"

DEADLINE=$(conf MIGRATION_DEADLINE_SECS)
case "$DEADLINE" in
  '' | *[!0-9]*) DEADLINE=300 ;;
esac

# Only one agent may speak for the site: the Node agent stops first (this
# also ends the shim's process, which waits for exactly that).
systemctl stop "$OLD.service" || give_back "systemctl stop $OLD failed"

# What the first heartbeat reports (versionInfo.tookOverFrom). Written before
# the agent's first start; systemd hands StateDirectory= to the agent's user.
mkdir -p "$STATE" && chmod 0700 "$STATE"
NODE_VERSION=$(node --version 2>/dev/null || echo unknown)
printf '{"agent":"%s","runtime":"Node.js %s","at":"%s"}\n' \
  "$OLD" "$NODE_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STATE/took-over.json"
chmod 0600 "$STATE/took-over.json"

CONF_OWNER=$(stat -c '%u:%g' "$SITE_CONF")
CONF_MODE=$(stat -c '%a' "$SITE_CONF")
STAMP="$HERE/handover-started"
: >"$STAMP"
if ! OUT=$(dpkg -i "$DEB" 2>&1); then
  log "$OUT"
  give_back "dpkg -i $(basename "$DEB") failed: $(printf '%s' "$OUT" | grep -m1 -i 'error\|depends' || echo 'see the journal')"
fi
systemctl is-enabled --quiet "$NEW.service" || give_back "the package did not install and enable $NEW (is $SITE_CONF readable?)"

log "neopro-runtime installed; waiting up to $DEADLINE s for it to authenticate"
waited=0
while [ "$waited" -lt "$DEADLINE" ]; do
  STATUS="$RUNTIME/link-status.json"
  if [ -n "$(find "$STATUS" -newer "$STAMP" 2>/dev/null)" ] \
    && grep -q '"lastAuthenticated"' "$STATUS" 2>/dev/null \
    && systemctl is-active --quiet "$NEW.service"; then
    systemctl disable "$OLD.service" >/dev/null 2>&1 || true
    rm -f "$SHIM"
    printf 'took over\n' >"$DONE"
    log "neopro-runtime authenticated after $waited s; $OLD disabled (its files are left in $SYNC)"
    exit 0
  fi
  sleep 2
  waited=$((waited + 2))
done
give_back "neopro-runtime did not authenticate within $DEADLINE s ($(systemctl is-active "$NEW.service" 2>/dev/null))"
