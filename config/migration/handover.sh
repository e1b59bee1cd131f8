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
# Steps: check the package (its sha256, embedded here when the bundle was
# built, checked on a copy in a root-owned folder) fits this box; stop the
# Node agent; install the .deb (its postinst runs `install-service` because
# /etc/neopro/site.conf exists: same site, same key, no re-registration);
# wait until the new agent has authenticated with the central; then disable
# and mask the Node agent's unit (upstream's operator scripts restart it
# whenever it exists). Any failure, or no authentication within
# MIGRATION_DEADLINE_SECS (site.conf, default 300), puts the Node agent back:
# neopro-runtime stopped and disabled, the shim removed (the Node agent's own
# files were never changed), the old unit unmasked, enabled and restarted
# (restarted: a Node agent still waiting in the shim must run again).
# Videos, configuration.json and backups are never touched.
#
# The outcome is kept in a root-owned folder, RECORD (/var/lib/neopro-handover):
# `took over` is final; `rolled back: <reason>` holds for this package only
# (its sha256 on the second line), so a bundle with another package runs the
# handover again. Everything is logged to the journal
# (`journalctl -u neopro-handover`); nothing is written through a path the
# web app's user controls.
#
# site.conf is read as the agent reads it (`handover.sh site-conf FILE KEY`
# prints a value as the handover sees it), never sourced: nothing in it runs.
set -u

OLD=neopro-sync-agent
NEW=neopro-runtime
# Filled in by `cargo xtask migration-bundle`.
DEB_NAME='@DEB_NAME@'
DEB_SHA256='@DEB_SHA256@'

# The value of KEY in the dotenv file FILE, by the agent's rules
# (runtime/src/config.rs, parse_dotenv): lines trimmed (a CR at the end
# included), blank lines and `#` lines skipped, `export ` dropped, the key
# trimmed; a value in matching quotes is taken verbatim, otherwise it ends
# at ` #`; the last one wins. Exits 2, naming the line, where the agent
# would refuse the file.
site_conf() {
  awk -v want="$2" '
    function trim(s) { sub(/^[ \t\r\n\v\f]+/, "", s); sub(/[ \t\r\n\v\f]+$/, "", s); return s }
    {
      line = trim($0)
      if (line == "" || substr(line, 1, 1) == "#") next
      if (substr(line, 1, 7) == "export ") line = substr(line, 8)
      eq = index(line, "=")
      if (eq == 0) { bad = NR; exit }
      key = trim(substr(line, 1, eq - 1))
      if (key !~ /^[A-Za-z0-9_.-]+$/) { bad = NR; exit }
      if (key != want) next
      v = trim(substr(line, eq + 1))
      q = substr(v, 1, 1)
      shut = 0
      if (length(v) >= 2 && (q == "\"" || q == "\047" || q == "`")) shut = index(substr(v, 2), q)
      if (shut > 0) {
        val = substr(v, 2, shut - 1)
        if (q == "\"") gsub(/\\n/, "\n", val)
      } else {
        c = index(v, " #")
        val = (c > 0) ? trim(substr(v, 1, c - 1)) : v
      }
    }
    END {
      if (bad) { print "line " bad " is not KEY=VALUE" > "/dev/stderr"; exit 2 }
      printf "%s", val
    }' "$1"
}

if [ "${1:-}" = site-conf ] && [ $# -eq 3 ]; then
  site_conf "$2" "$3"
  exit $?
fi

HERE=$(cd "$(dirname "$0")" && pwd)
SYNC=$(dirname "$HERE")
SITE_CONF=${NEOPRO_SITE_CONF:-/etc/neopro/site.conf}
RECORD=${NEOPRO_HANDOVER_DIR:-/var/lib/neopro-handover}
SHIM="$SYNC/src/commands.js"
DONE="$RECORD/handover-done"
UNITS=${NEOPRO_SYSTEMD_DIR:-/etc/systemd/system}
TMP=

log() {
  echo "neopro handover: $*"
}

# Writes the outcome (line 1) and the package it holds for (line 2).
record() {
  printf '%s\ndeb-sha256 %s\n' "$1" "$DEB_SHA256" >"$DONE.tmp" && mv -f "$DONE.tmp" "$DONE"
}

# The old unit file moved aside at the takeover, then the unit masked
# (`systemctl mask` refuses while a unit file sits in /etc/systemd/system).
mask_old() {
  if [ -e "$UNITS/$OLD.service" ] || [ -L "$UNITS/$OLD.service" ]; then
    if [ "$(readlink "$UNITS/$OLD.service")" != /dev/null ]; then
      mv -f "$UNITS/$OLD.service" "$RECORD/$OLD.service" || return 1
    fi
  fi
  systemctl mask "$OLD.service" >/dev/null 2>&1
}

unmask_old() {
  if [ "$(readlink "$UNITS/$OLD.service" 2>/dev/null)" = /dev/null ]; then
    systemctl unmask "$OLD.service" >/dev/null 2>&1 || true
  fi
  if [ -f "$RECORD/$OLD.service" ] && [ ! -e "$UNITS/$OLD.service" ]; then
    mv -f "$RECORD/$OLD.service" "$UNITS/$OLD.service" || true
  fi
  systemctl daemon-reload >/dev/null 2>&1 || true
}

# Puts the Node agent back and says why.
give_back() {
  log "moving to neopro-runtime failed: $1; the Node.js agent ($OLD) is started again"
  [ -n "$TMP" ] && rm -rf "$TMP"
  if systemctl cat "$NEW.service" >/dev/null 2>&1; then
    systemctl disable --now "$NEW.service" >/dev/null 2>&1 || true
  fi
  [ -n "${STATE:-}" ] && rm -f "$STATE/took-over.json"
  # install-service gives site.conf to the agent's user (0600): the Node
  # agent reads it as it did before.
  if [ -n "${CONF_OWNER:-}" ]; then
    chown "$CONF_OWNER" "$SITE_CONF" && chmod "$CONF_MODE" "$SITE_CONF" || true
  fi
  rm -f "$SHIM"
  unmask_old
  systemctl enable "$OLD.service" >/dev/null 2>&1 || true
  # restart, not start: before the handover stopped it, the Node agent is
  # active, waiting in the shim. Restarted before the outcome is written,
  # so the waiting process never runs on beside the new one (the shim runs
  # on by itself only once the outcome is there).
  systemctl restart "$OLD.service" || log "systemctl restart $OLD failed"
  record "rolled back: $1" || log "cannot write $DONE"
  exit 1
}

# Without its record folder the handover cannot keep its outcome: it does
# nothing, and a Node agent waiting in the shim runs again.
if [ -L "$RECORD" ] || ! { mkdir -p "$RECORD" && chown 0:0 "$RECORD" && chmod 0755 "$RECORD"; }; then
  log "cannot use $RECORD (a link, or not writable); the Node.js agent runs on"
  systemctl restart "$OLD.service"
  exit 1
fi

if [ -f "$DONE" ]; then
  OUTCOME=$(head -n 1 "$DONE")
  FOR=$(sed -n 's/^deb-sha256 //p' "$DONE")
  case "$OUTCOME" in
    'took over'*)
      log "already done ($OUTCOME); nothing to do"
      exit 0
      ;;
    'rolled back'*)
      if [ "$FOR" = "$DEB_SHA256" ]; then
        log "this package was already rolled back ($OUTCOME); deploy a bundle with a fixed package to try again"
        exit 0
      fi
      log "an earlier package was rolled back ($OUTCOME); this is another one: trying again"
      ;;
  esac
fi
log "taking the box over from the Node.js agent (package $DEB_NAME, sha256 $DEB_SHA256)"
# A copy left by a handover cut short (power cut) is not needed any more.
rm -rf "$RECORD"/package.*

case "$DEB_SHA256" in
  *[!0-9a-f]* | '') give_back "this handover was not built by cargo xtask migration-bundle (no package sha256 in it)" ;;
esac
[ ${#DEB_SHA256} -eq 64 ] || give_back "this handover holds no valid package sha256"

[ -r "$SITE_CONF" ] || give_back "$SITE_CONF is missing or unreadable (the box is not registered)"
conf() {
  site_conf "$SITE_CONF" "$1" 2>/dev/null
}
if ! ERR=$(site_conf "$SITE_CONF" SITE_ID 2>&1 >/dev/null); then
  give_back "$SITE_CONF: $ERR (neopro-runtime would refuse the file)"
fi
STATE=$(conf STATE_PATH)
[ -n "$STATE" ] || STATE=/var/lib/neopro-runtime
case "$STATE" in
  /*) ;;
  *) give_back "STATE_PATH in $SITE_CONF is not an absolute path ($STATE)" ;;
esac
# The running agent's link status lives in the unit's tmpfs (RuntimeDirectory).
RUNTIME=$(conf RUNTIME_PATH)
[ -n "$RUNTIME" ] || RUNTIME=/run/neopro-runtime

# The package is copied out of the web app's folder into one only root
# writes, then checked there: what is installed is what was checked.
SRC="$HERE/$DEB_NAME"
[ -f "$SRC" ] && [ ! -L "$SRC" ] || give_back "no $DEB_NAME in $HERE (the bundle is incomplete)"
TMP=$(mktemp -d "$RECORD/package.XXXXXX") || give_back "cannot make a temporary folder in $RECORD"
DEB="$TMP/$DEB_NAME"
timeout 300 cp -P -- "$SRC" "$DEB" || give_back "cannot copy $DEB_NAME"
[ -f "$DEB" ] && [ ! -L "$DEB" ] || give_back "$DEB_NAME is not a regular file"
GOT=$(sha256sum "$DEB" | cut -d ' ' -f 1)
[ "$GOT" = "$DEB_SHA256" ] || give_back "$DEB_NAME is not the package this bundle was built with (sha256 differs)"
WANT=$(dpkg-deb -f "$DEB" Architecture 2>/dev/null) || give_back "$DEB_NAME is not a readable package"
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
# the agent's first start, owned by the state folder's owner: systemd hands
# a new StateDirectory= to the agent's user, but not the files in one the
# agent already owns (left by a rolled-back handover). The agent's user can
# write that folder: the file is created anew (O_EXCL, never through a link
# planted there) and its owner changed without following one.
mkdir -p "$STATE" && chmod 0700 "$STATE"
NODE_VERSION=$(node --version 2>/dev/null || echo unknown)
TOOK="$STATE/took-over.json"
rm -f "$TOOK"
if (umask 077 && set -C && printf '{"agent":"%s","runtime":"Node.js %s","at":"%s"}\n' \
  "$OLD" "$NODE_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$TOOK"); then
  chown -h "$(stat -c '%u:%g' "$STATE")" "$TOOK" || log "cannot give $TOOK to the agent's user"
else
  log "cannot write $TOOK; the heartbeats will not say where the box came from"
fi

CONF_OWNER=$(stat -c '%u:%g' "$SITE_CONF")
CONF_MODE=$(stat -c '%a' "$SITE_CONF")
STAMP="$RECORD/handover-started"
: >"$STAMP"
if ! OUT=$(dpkg -i "$DEB" 2>&1); then
  log "$OUT"
  give_back "dpkg -i $DEB_NAME failed: $(printf '%s' "$OUT" | grep -m1 -i 'error\|depends' || echo 'see the journal')"
fi
rm -rf "$TMP"
TMP=
# A package an earlier, rolled-back handover left installed (stopped and
# disabled) is upgraded, not installed: its postinst only try-restarts it.
if ! systemctl is-enabled --quiet "$NEW.service"; then
  log "$NEW is installed but not enabled (left by an earlier handover): running its install-service"
  OUT=$(neopro-runtime install-service 2>&1) || log "$OUT"
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
    mask_old || log "cannot mask $OLD; it is disabled, but a script that restarts it would start it"
    rm -f "$SHIM"
    record 'took over' || log "cannot write $DONE"
    log "neopro-runtime authenticated after $waited s; $OLD disabled and masked (its files are left in $SYNC, its unit file in $RECORD)"
    exit 0
  fi
  sleep 2
  waited=$((waited + 2))
done
give_back "neopro-runtime did not authenticate within $DEADLINE s ($(systemctl is-active "$NEW.service" 2>/dev/null))"
