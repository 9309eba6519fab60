#!/usr/bin/env bash
# Builds dist/packages/git-fcgi_VERSION-RELEASE_ARCH.deb (dpkg-deb) and
# dist/packages/git-fcgi-VERSION-RELEASE.ARCH.rpm (rpmbuild) from this checkout's dist/ and
# node_modules/: run it as `npm run package`, which builds first. Needs dpkg-deb and rpmbuild
# (Debian: apt-get install rpm); neither needs root.
#
# Both packages hold the same files, placed by scripts/layout.sh (debian and redhat layouts):
#   /usr/lib/git-fcgi/        dist/ (with the spawn helper), package.json, production node_modules
#   /usr/bin/git-fcgi         the launcher
#   /etc/git-fcgi/git-fcgi.ini, the EnvironmentFile, /etc/logrotate.d/git-fcgi   (configuration)
#   UNIT_DIR/git-fcgi.{service,socket}
#   /usr/share/doc/git-fcgi/  README.md, examples/<front end>/...
#   /usr/share/man/man8/git-fcgi.8.gz
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$SRC/scripts/package
# shellcheck source=scripts/layout.sh
. "$SRC/scripts/layout.sh"

OUT=$SRC/dist/packages
APP=/usr/lib/git-fcgi
DOC=/usr/share/doc/git-fcgi
NODE=/usr/bin/node
RELEASE=1
MAINTAINER=${GIT_FCGI_MAINTAINER:-The git-fcgi authors <git-fcgi@example.org>}
FRONT_ENDS=(nginx apache lighttpd haproxy caddy h2o)
SUMMARY='Git over HTTP behind nginx: a FastCGI server for git http-backend'
DESCRIPTION='git-fcgi serves Git repositories over HTTP(S) behind nginx, Apache,
lighttpd, HAProxy, Caddy or h2o: a streaming FastCGI server for git
http-backend that replaces fcgiwrap and spawn-fcgi, with per-repository and
per-branch access control, a ref advertisement cache, graceful restarts and
systemd socket activation.'

die() { echo "package: $*" >&2; exit 1; }
say() { echo "package: $*"; }
warn() { echo "package: WARNING: $*" >&2; }
# put MODE FILE: stdin into FILE (directories made).
put() { install -D -m "$1" /dev/stdin "$2"; }

[ -f "$SRC/dist/cli.js" ] || die "dist/cli.js is missing: run \`npm run package\` (it builds first)"
for tool in dpkg-deb rpmbuild; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian/Ubuntu: apt-get install dpkg rpm; RHEL: dnf install dpkg rpm-build)"
done
VERSION=$(node -p 'require(process.argv[1]).version' "$SRC/package.json")
# The oldest Node.js git-fcgi runs on, from package.json's engines (">=20.17").
NODE_MIN=$(node -p 'require(process.argv[1]).engines.node.replace(/^>=\s*/, "")' "$SRC/package.json")
# Timestamps (file dates, changelogs) from the commit: the same commit gives the same packages.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
COMMIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)

MAN=$SRC/dist/man/git-fcgi.8
[ -f "$MAN" ] || die "dist/man/git-fcgi.8 is missing: run npm run build (it makes the man page) first"
HELPER=$SRC/dist/git-fcgi-spawnd
if [ -f "$HELPER" ]; then
  DEB_ARCH=$(dpkg --print-architecture)
  RPM_ARCH=$(uname -m)
else
  warn "dist/git-fcgi-spawnd is missing (no C compiler at build time): architecture-independent" \
    "packages without the spawn helper; backends will be started by forking the daemon"
  DEB_ARCH=all
  RPM_ARCH=noarch
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

# stage FAMILY ROOT: the installed tree for that layout.
stage() {
  local root=$2 fe file first
  layout "$1"
  copy_app "$SRC" "$root$APP"
  launcher "$NODE" "$APP" | put 0755 "$root/usr/bin/git-fcgi"
  render_service "$SRC" /usr/bin "$DOC" | put 0644 "$root$UNIT_DIR/git-fcgi.service"
  render_socket "$SRC" "$DOC" | put 0644 "$root$UNIT_DIR/git-fcgi.socket"
  render_ini "$SRC" | put 0644 "$root/etc/git-fcgi/git-fcgi.ini"
  put 0644 "$root$ENV_FILE" <"$SRC/etc/sysconfig/git-fcgi"
  put 0644 "$root/etc/logrotate.d/git-fcgi" <"$SRC/etc/logrotate.d/git-fcgi"
  put 0644 "$root$DOC/README.md" <"$SRC/README.md"
  for fe in "${FRONT_ENDS[@]}"; do
    for file in "$SRC/etc/$fe"/*; do put 0644 "$root$DOC/examples/$fe/${file##*/}" <"$file"; done
  done
  if [ -n "$MAN" ]; then gzip -9n <"$MAN" | put 0644 "$root/usr/share/man/man8/git-fcgi.8.gz"; fi
  # Whatever modes npm and tsc left: directories 0755, files 0644, scripts (#!) and the
  # helpers 0755, the helpers stripped.
  find "$root" -type d -exec chmod 0755 {} +
  find "$root" -type f -exec chmod 0644 {} +
  find "$root" -type f -print0 | while IFS= read -r -d '' file; do
    IFS= read -r -n 2 first <"$file" || true
    if [ "$first" = '#!' ]; then chmod 0755 "$file"; fi
  done
  # Scripts name node itself, as Fedora's packaging rules want (and PATH cannot change it).
  grep -rlZ '^#!/usr/bin/env node$' "$root" | while IFS= read -r -d '' file; do
    sed -i "1s|^#!/usr/bin/env node\$|#!$NODE|" "$file"
  done
  if [ -f "$HELPER" ]; then
    chmod 0755 "$root$APP/dist/git-fcgi-spawnd" "$root$APP/dist/git-fcgi-pack-hook" "$root$APP/dist/git-fcgi-splice"
    strip --strip-unneeded "$root$APP/dist/git-fcgi-spawnd" "$root$APP/dist/git-fcgi-pack-hook" \
      "$root$APP/dist/git-fcgi-splice"
  fi
}

# The licenses of git-fcgi and of each module shipped in node_modules.
copyright() {
  printf 'git-fcgi %s\n\n' "$VERSION"
  cat "$SRC/LICENSE"
  printf '\nIt ships these Node.js modules in %s/node_modules, each under the license in its\nown directory there:\n' "$APP"
  (cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null) | tail -n +2 |
    node -e '
      const lines = require("node:fs").readFileSync(0, "utf8").trim().split("\n").map((dir) => {
        const p = require(`${dir}/package.json`);
        return `  ${p.name} ${p.version} (${p.license})`;
      });
      console.log([...new Set(lines)].sort().join("\n"));'
}

build_deb() {
  local root=$WORK/deb deb libc depends started=$SECONDS
  stage debian "$root"
  copyright | put 0644 "$root$DOC/copyright"
  put 0644 "$root/usr/share/lintian/overrides/git-fcgi" <"$HERE/deb/lintian-overrides"
  {
    printf 'git-fcgi (%s-%s) unstable; urgency=medium\n\n' "$VERSION" "$RELEASE"
    printf '  * Built from git-fcgi %s (commit %s) by scripts/package/build.sh.\n\n' "$VERSION" "$COMMIT"
    printf ' -- %s  %s\n' "$MAINTAINER" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
  } | gzip -9n | put 0644 "$root$DOC/changelog.Debian.gz"

  mkdir -p "$root/DEBIAN"
  for script in postinst prerm postrm; do
    sed -e "s|@GIT_USER@|$GIT_USER|g" -e "s|@GIT_HOME@|$GIT_HOME|g" -e "s|@NOLOGIN@|$NOLOGIN|g" \
      "$HERE/deb/$script" | put 0755 "$root/DEBIAN/$script"
  done
  printf '%s\n' /etc/git-fcgi/git-fcgi.ini "$ENV_FILE" /etc/logrotate.d/git-fcgi | put 0644 "$root/DEBIAN/conffiles"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) |
    put 0644 "$root/DEBIAN/md5sums"
  depends="nodejs (>= $NODE_MIN), git, adduser"
  if [ -f "$HELPER" ]; then
    # The newest glibc symbol version the helper links against.
    libc=$(objdump -T "$HELPER" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
    depends="libc6 (>= $libc), $depends"
  fi
  {
    echo "Package: git-fcgi"
    echo "Version: $VERSION-$RELEASE"
    echo "Architecture: $DEB_ARCH"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    echo "Depends: $depends"
    echo "Suggests: nginx | apache2 | lighttpd | haproxy | caddy | h2o"
    echo "Section: vcs"
    echo "Priority: optional"
    echo "Description: $SUMMARY"
    # Continuation lines start with a space.
    sed 's/^/ /' <<<"$DESCRIPTION"
  } | put 0644 "$root/DEBIAN/control"
  deb=$OUT/git-fcgi_${VERSION}-${RELEASE}_${DEB_ARCH}.deb
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  say "built ${deb#"$SRC"/} ($(du -k "$deb" | cut -f1) KiB, $(find "$root" -path "$root/DEBIAN" -prune -o -type f -print | wc -l) files) in $((SECONDS - started)) s"
}

build_rpm() {
  local root=$WORK/rpm-root spec=$WORK/git-fcgi.spec changelog started=$SECONDS rpm
  stage redhat "$root"
  put 0644 "$root/usr/share/licenses/git-fcgi/LICENSE" <"$SRC/LICENSE"
  changelog="* $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y') $MAINTAINER - $VERSION-$RELEASE
- Built from git-fcgi $VERSION (commit $COMMIT) by scripts/package/build.sh."
  # Replacements through the environment: the description spans lines.
  VERSION=$VERSION RELEASE=$RELEASE SUMMARY=$SUMMARY DESCRIPTION=$DESCRIPTION ARCH=$RPM_ARCH \
    NODE_MIN=$NODE_MIN STAGE=$root GIT_USER=$GIT_USER GIT_HOME=$GIT_HOME NOLOGIN=$NOLOGIN \
    APP=$APP DOC=$DOC ENV_FILE=$ENV_FILE UNIT_DIR=$UNIT_DIR CHANGELOG=$changelog MAINTAINER=$MAINTAINER \
    MAN_FILES=${MAN:+/usr/share/man/man8/git-fcgi.8.gz} \
    node -e '
      const fs = require("node:fs");
      const text = fs.readFileSync(process.argv[1], "utf8").replace(/@([A-Z_]+)@/g, (_, name) => {
        if (process.env[name] === undefined) throw new Error(`no value for @${name}@`);
        return process.env[name];
      });
      fs.writeFileSync(process.argv[2], text);
    ' "$HERE/git-fcgi.spec.in" "$spec"
  rpmbuild -bb --nodeps --quiet --target "$RPM_ARCH" \
    --define "_topdir $WORK/rpmbuild" --define "_rpmdir $OUT" \
    --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' \
    "$spec" >/dev/null
  rpm=$OUT/git-fcgi-$VERSION-$RELEASE.$RPM_ARCH.rpm
  say "built ${rpm#"$SRC"/} ($(du -k "$rpm" | cut -f1) KiB, $(find "$root" -type f | wc -l) files) in $((SECONDS - started)) s"
}

build_deb
build_rpm
