#!/usr/bin/env bash
# Installs git-fcgi from this checkout onto this host (RHEL/CentOS/Fedora or Debian/Ubuntu):
#   the app under PREFIX, a `git-fcgi` launcher in BINDIR, the user `git`, the systemd units,
#   /etc/git-fcgi/git-fcgi.ini, /etc/sysconfig/git-fcgi or /etc/default/git-fcgi, logrotate.
# Existing configuration is never overwritten; the units are (local changes belong in drop-ins:
# systemctl edit git-fcgi). Safe to run again, e.g. after `git pull && npm ci`.
set -euo pipefail

usage() {
  cat <<EOF
usage: scripts/install.sh [--prefix DIR] [--bindir DIR] [--root DIR] [--dry-run]
  --prefix DIR  where the app goes (default /usr/local/lib/git-fcgi)
  --bindir DIR  where the git-fcgi launcher goes (default /usr/local/bin)
  --root DIR    install into DIR as if it were / (packaging, trying it out): no user is
                created and systemctl is not run
  --dry-run     print what would be done, change nothing
Run \`npm ci\` in the checkout first (it builds dist/).
EOF
}

PREFIX=/usr/local/lib/git-fcgi
BINDIR=/usr/local/bin
ROOT=
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --bindir) BINDIR=${2:?--bindir needs a directory}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$PREFIX$BINDIR" in /*/*) ;; *) echo "install: --prefix and --bindir must be absolute" >&2; exit 2 ;; esac
ROOT=${ROOT%/}

SRC=$(cd "$(dirname "$0")/.." && pwd)
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
NPM=$(command -v npm) || die "npm is not on PATH"
[ "$("$NODE" -p 'process.versions.node.split(".")[0] >= 20')" = true ] || die "Node.js >= 20.17 needed, found $("$NODE" --version)"

if [ -e /etc/debian_version ]; then FAMILY=debian; ENV_FILE=/etc/default/git-fcgi; else FAMILY=redhat; ENV_FILE=/etc/sysconfig/git-fcgi; fi
# The group nginx runs as gets the socket (SocketGroup=).
if getent group nginx >/dev/null; then WEB_GROUP=nginx
elif getent group www-data >/dev/null; then WEB_GROUP=www-data
elif [ "$FAMILY" = debian ]; then WEB_GROUP=www-data
else WEB_GROUP=nginx; fi
say "installing to ${ROOT:-/} ($FAMILY layout, socket group $WEB_GROUP)"

# 1. The app: dist/, etc/, and only the production dependencies.
APP=$ROOT$PREFIX
run mkdir -p "$APP"
run rm -rf "$APP/dist" "$APP/etc" "$APP/node_modules"
run cp -R "$SRC/dist" "$SRC/etc" "$APP/"
run cp "$SRC/package.json" "$SRC/package-lock.json" "$SRC/README.md" "$SRC/LICENSE" "$APP/"
(cd "$SRC" && "$NPM" ls --omit=dev --all --parseable 2>/dev/null) | while read -r dir; do
  rel=${dir#"$SRC"/}
  [ "$rel" = "$dir" ] && continue # the project itself
  run mkdir -p "$APP/$(dirname "$rel")"
  run cp -R "$dir" "$APP/$rel"
done

# 2. The launcher, with the node found now: systemd's PATH may not have it.
LAUNCHER=$(mktemp)
trap 'rm -f "$LAUNCHER"' EXIT
printf '#!/bin/sh\nexec %s %s/dist/cli.js "$@"\n' "$NODE" "$PREFIX" >"$LAUNCHER"
run install -D -m 0755 "$LAUNCHER" "$ROOT$BINDIR/git-fcgi"

# 3. The user git, owning the repositories in /srv/git.
if [ -n "$ROOT" ]; then
  say "--root: not creating user git (useradd --system --user-group --home-dir /srv/git git)"
elif getent passwd git >/dev/null; then
  say "user git exists"
else
  NOLOGIN=$(command -v nologin || echo /sbin/nologin)
  run useradd --system --user-group --home-dir /srv/git --no-create-home --shell "$NOLOGIN" git
fi
if [ ! -d "$ROOT/srv/git" ]; then
  run install -d -m 0755 "$ROOT/srv/git"
  [ -n "$ROOT" ] || run chown git:git /srv/git
fi

# 4. systemd units, pointing at the launcher and the web server's group.
UNITS=$(mktemp -d)
trap 'rm -rf "$LAUNCHER" "$UNITS"' EXIT
sed -e "s|/usr/local/bin/git-fcgi|$BINDIR/git-fcgi|g" -e "s|/usr/local/lib/git-fcgi|$PREFIX|g" \
  "$SRC/etc/systemd/git-fcgi.service" >"$UNITS/git-fcgi.service"
sed -e "s|^SocketGroup=.*|SocketGroup=$WEB_GROUP|" -e "s|/usr/local/lib/git-fcgi|$PREFIX|g" \
  "$SRC/etc/systemd/git-fcgi.socket" >"$UNITS/git-fcgi.socket"
for unit in git-fcgi.service git-fcgi.socket; do
  run install -D -m 0644 "$UNITS/$unit" "$ROOT/etc/systemd/system/$unit"
done

# 5. Configuration: never overwritten.
install_config "$SRC/etc/git-fcgi.ini" /etc/git-fcgi/git-fcgi.ini 0644
install_config "$SRC/etc/sysconfig/git-fcgi" "$ENV_FILE" 0644
if [ -d "$ROOT/etc/logrotate.d" ] || [ -n "$ROOT" ]; then
  install_config "$SRC/etc/logrotate.d/git-fcgi" /etc/logrotate.d/git-fcgi 0644
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then run systemctl daemon-reload; fi

cat <<EOF
install: done. Next:
  1. set project_root (and anything else) in /etc/git-fcgi/git-fcgi.ini; check it: git-fcgi -c /etc/git-fcgi/git-fcgi.ini -t
  2. the repositories' directory must be in ReadWritePaths= of git-fcgi.service (default /srv/git;
     otherwise: systemctl edit git-fcgi)
  3. systemctl enable --now git-fcgi.socket
  4. nginx: $PREFIX/etc/nginx/git-fcgi.conf (fastcgi_pass unix:/run/git-fcgi/git-fcgi.sock)
EOF
