#!/usr/bin/env bash
# Installs git-fcgi from this checkout onto this host (RHEL/CentOS/Fedora or Debian/Ubuntu):
#   the app under PREFIX, a `git-fcgi` launcher in BINDIR, the user `git`, the systemd units,
#   /etc/git-fcgi/git-fcgi.ini, /etc/sysconfig/git-fcgi or /etc/default/git-fcgi, logrotate.
# Existing configuration is never overwritten; the units are (local changes belong in drop-ins:
# systemctl edit git-fcgi). Safe to run again, e.g. after `git pull && npm ci`.
set -euo pipefail

usage() {
  cat <<EOF
usage: scripts/install.sh [--prefix DIR] [--bindir DIR] [--root DIR] [--layout FAMILY] [--dry-run]
  --prefix DIR      where the app goes (default /usr/local/lib/git-fcgi)
  --bindir DIR      where the git-fcgi launcher goes (default /usr/local/bin)
  --root DIR        install into DIR as if it were / (trying it out): no user is created and
                    systemctl is not run
  --layout FAMILY   debian or redhat paths (default: this machine's)
  --dry-run         print what would be done, change nothing
For a .deb or .rpm: npm run package.
Run \`npm ci\` in the checkout first (it builds dist/).
EOF
}

PREFIX=/usr/local/lib/git-fcgi
BINDIR=/usr/local/bin
ROOT=
FAMILY=
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --bindir) BINDIR=${2:?--bindir needs a directory}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --layout) FAMILY=${2:?--layout needs debian or redhat}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$PREFIX$BINDIR" in /*/*) ;; *) echo "install: --prefix and --bindir must be absolute" >&2; exit 2 ;; esac
ROOT=${ROOT%/}

SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/layout.sh
. "$SRC/scripts/layout.sh"
layout "${FAMILY:-$(host_family)}" || exit 2
die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }
# Every change goes through run, so --dry-run shows exactly what a real run does.
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
# Installs $1 as $2 (mode $3) unless $2 exists: configuration is the admin's.
install_config() {
  if [ -e "$ROOT$2" ]; then say "keeping existing $2"; else run install -D -m "$3" "$1" "$ROOT$2"; fi
}

[ -f "$SRC/dist/cli.js" ] || die "$SRC/dist/cli.js is missing: run \`npm ci\` in $SRC first"
NODE=$(command -v node) || die "node is not on PATH (git-fcgi needs Node.js >= 20.17)"
command -v npm >/dev/null || die "npm is not on PATH"
[ "$("$NODE" -p 'process.versions.node.split(".")[0] >= 20')" = true ] || die "Node.js >= 20.17 needed, found $("$NODE" --version)"

# The group nginx runs as gets the socket (SocketGroup=): the layout's unless only the other exists.
if ! getent group "$WEB_GROUP" >/dev/null; then
  for group in nginx www-data; do
    if getent group "$group" >/dev/null; then WEB_GROUP=$group; break; fi
  done
fi
say "installing to ${ROOT:-/} ($FAMILY layout, socket group $WEB_GROUP)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. The app: dist/, package.json and only the production dependencies; etc/ and the README
#    beside them as documentation.
APP=$ROOT$PREFIX
run mkdir -p "$APP"
run rm -rf "$APP/dist" "$APP/etc" "$APP/node_modules"
run copy_app "$SRC" "$APP"
run cp -R "$SRC/etc" "$APP/"
run cp "$SRC/package-lock.json" "$SRC/README.md" "$SRC/LICENSE" "$APP/"

# 2. The launcher, with the node found now.
launcher "$NODE" "$PREFIX" >"$TMP/git-fcgi"
run install -D -m 0755 "$TMP/git-fcgi" "$ROOT$BINDIR/git-fcgi"
# The man page, beside the launcher: /usr/local/bin -> /usr/local/share/man (man finds it there).
if [ -f "$SRC/dist/man/git-fcgi.8" ]; then
  run install -D -m 0644 "$SRC/dist/man/git-fcgi.8" "$ROOT$(dirname "$BINDIR")/share/man/man8/git-fcgi.8"
fi

# 3. The user git, owning the repositories in /srv/git.
USERADD=(useradd --system --user-group --home-dir "$GIT_HOME" --no-create-home --shell "$NOLOGIN" "$GIT_USER")
if [ -n "$ROOT" ]; then
  say "--root: not creating user $GIT_USER (${USERADD[*]})"
elif getent passwd "$GIT_USER" >/dev/null; then
  say "user $GIT_USER exists"
else
  run "${USERADD[@]}"
fi
if [ ! -d "$ROOT$GIT_HOME" ]; then
  run install -d -m 0755 "$ROOT$GIT_HOME"
  [ -n "$ROOT" ] || run chown "$GIT_USER:$GIT_USER" "$GIT_HOME"
fi

# 4. systemd units, pointing at the launcher and the web server's group.
render_service "$SRC" "$BINDIR" "$PREFIX" >"$TMP/git-fcgi.service"
render_socket "$SRC" "$PREFIX" >"$TMP/git-fcgi.socket"
for unit in git-fcgi.service git-fcgi.socket; do
  run install -D -m 0644 "$TMP/$unit" "$ROOT/etc/systemd/system/$unit"
done

# 5. Configuration: never overwritten.
render_ini "$SRC" >"$TMP/git-fcgi.ini"
install_config "$TMP/git-fcgi.ini" /etc/git-fcgi/git-fcgi.ini 0644
install_config "$SRC/etc/sysconfig/git-fcgi" "$ENV_FILE" 0644
if [ -d "$ROOT/etc/logrotate.d" ] || [ -n "$ROOT" ]; then
  install_config "$SRC/etc/logrotate.d/git-fcgi" /etc/logrotate.d/git-fcgi 0644
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then run systemctl daemon-reload; fi

cat <<EOF
install: done. Next:
  1. set project_root (and anything else) in /etc/git-fcgi/git-fcgi.ini; check it as the service runs it:
     runuser -u $GIT_USER -- git-fcgi -c /etc/git-fcgi/git-fcgi.ini -t
  2. the repositories' directory must be in ReadWritePaths= of git-fcgi.service (default /srv/git;
     otherwise: systemctl edit git-fcgi)
  3. systemctl enable --now git-fcgi.socket
  4. nginx: $PREFIX/etc/nginx/git-fcgi.conf (fastcgi_pass unix:/run/git-fcgi/git-fcgi.sock)
EOF
