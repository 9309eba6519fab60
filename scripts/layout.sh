# shellcheck shell=bash
# Where git-fcgi's files go on each distribution family, and how etc/ is adapted to it: the one
# place that knows the differences. Sourced by scripts/install.sh (installing from a checkout)
# and scripts/package/build.sh (the .deb and the .rpm).

# The account git-fcgi runs as (User= in git-fcgi.service), owning the repositories. Its home is
# where the repositories usually live; nothing creates it but scripts/install.sh (packages may not
# put files in /srv).
GIT_USER=git
GIT_HOME=/srv/git

# layout FAMILY: sets, for debian (Debian, Ubuntu) or redhat (RHEL, CentOS, Rocky, Alma, Fedora),
#   FAMILY     the family
#   ENV_FILE   the service's EnvironmentFile (OPTIONS=...)
#   GIT_CORE   git's exec-path in the distribution's git package (git http-backend is there)
#   WEB_GROUP  the group the distribution's nginx runs as: it gets the socket (SocketGroup=)
#   UNIT_DIR   where a package puts systemd units
#   NOLOGIN    the shell of a system account
layout() {
  case "$1" in
    debian)
      ENV_FILE=/etc/default/git-fcgi GIT_CORE=/usr/lib/git-core WEB_GROUP=www-data
      UNIT_DIR=/lib/systemd/system NOLOGIN=/usr/sbin/nologin
      ;;
    redhat)
      ENV_FILE=/etc/sysconfig/git-fcgi GIT_CORE=/usr/libexec/git-core WEB_GROUP=nginx
      UNIT_DIR=/usr/lib/systemd/system NOLOGIN=/sbin/nologin
      ;;
    *)
      echo "layout: unknown distribution family '$1' (debian or redhat)" >&2
      return 2
      ;;
  esac
  FAMILY=$1
}

# The family of the machine this runs on.
host_family() {
  if [ -e /etc/debian_version ]; then echo debian; else echo redhat; fi
}

# app_files SRC: what an installed app holds, relative to SRC: dist/'s files (without source maps,
# whose sources are not installed, and without what `npm run package` and the man page build put
# there), package.json (it makes dist/ ES modules), and the production dependencies' files
# (without their dot-files: .eslintrc, .npmignore, .github/ and the like are for their developers).
app_files() {
  local src=$1 dir rel
  (cd "$src" && find dist -type f ! -name '*.map' ! -path 'dist/packages/*' ! -path 'dist/man/*' | sort)
  echo package.json
  (cd "$src" && npm ls --omit=dev --all --parseable 2>/dev/null) | while read -r dir; do
    rel=${dir#"$src"/}
    [ "$rel" = "$dir" ] || (cd "$src" && find "$rel" -type f ! -path '*/.*' | sort) # not the project itself
  done
}

# copy_app SRC DEST: app_files, copied from SRC into DEST.
copy_app() {
  mkdir -p "$2"
  app_files "$1" | tar -C "$1" --no-recursion -cf - -T - | tar -C "$2" -xf -
}

# launcher NODE PREFIX: /usr/bin/git-fcgi's text, with node's full path: systemd's PATH may
# not have it.
launcher() {
  printf '#!/bin/sh\nexec %s %s/dist/cli.js "$@"\n' "$1" "$2"
}

# sub FILE FROM TO: stdin with every FROM replaced by TO (fixed strings); fails when FILE (named
# in the message) had no FROM, so that a change to etc/ cannot silently undo an adaptation.
sub() {
  local text
  text=$(cat)
  case "$text" in
    *"$2"*) ;;
    *)
      echo "layout: $1 has no '$2' to adapt" >&2
      return 1
      ;;
  esac
  printf '%s\n' "${text//"$2"/"$3"}"
}

# render_service SRC BINDIR DOCDIR: etc/systemd/git-fcgi.service for this layout, running
# BINDIR/git-fcgi, reading only ENV_FILE, pointing at DOCDIR/README.md.
render_service() {
  local other=/etc/sysconfig/git-fcgi
  [ "$ENV_FILE" = "$other" ] && other=/etc/default/git-fcgi
  sub git-fcgi.service /usr/local/bin/git-fcgi "$2/git-fcgi" <"$1/etc/systemd/git-fcgi.service" |
    sub git-fcgi.service "EnvironmentFile=-$other"$'\n' '' |
    sub git-fcgi.service file:/usr/local/lib/git-fcgi/README.md "file:$3/README.md"
}

# render_socket SRC DOCDIR: etc/systemd/git-fcgi.socket with SocketGroup=WEB_GROUP.
render_socket() {
  sed -e "s|^SocketGroup=.*|SocketGroup=$WEB_GROUP|" "$1/etc/systemd/git-fcgi.socket" |
    sub git-fcgi.socket file:/usr/local/lib/git-fcgi/README.md "file:$2/README.md"
}

# render_ini SRC: etc/git-fcgi.ini showing this layout's values: the backend git-fcgi finds
# (`git --exec-path` of the distribution's git) and the socket owner nginx can connect as.
render_ini() {
  sub git-fcgi.ini $'\n;backend =\n' $'\n;backend = '"$GIT_CORE"$'/git-http-backend\n' <"$1/etc/git-fcgi.ini" |
    sub git-fcgi.ini '; e.g. socket_owner = git:nginx  (Debian: git:www-data)' "; e.g. socket_owner = $GIT_USER:$WEB_GROUP"
}
