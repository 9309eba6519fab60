#!/usr/bin/env bash
# Builds the git versions CI tests against from ../shared/vendor (or $GIT_FCGI_VENDOR) source tarballs,
# installed as Debian installs git (prefix /usr, exec-path /usr/lib/git-core, /etc/gitconfig) into
# $GIT_FCGI_GIT_CACHE/git-VERSION (default ~/.cache/git-fcgi). A version already built there is kept.
# Tests bind-mount a build over /usr/bin/git and /usr/lib/git-core in a private mount namespace.
# Usage: scripts/build-git.sh [--check] [VERSION ...]   (default: every tarball found)
#   --check: build nothing, print nothing; exit 0 when every version has a complete build, 1 otherwise.
set -euo pipefail
check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
# git 2.55 builds its Rust part with cargo where the machine has one (rustup's); without it,
# the build below falls back to NO_RUST=1.
if [ -d "$HOME/.cargo/bin" ]; then PATH="$HOME/.cargo/bin:$PATH"; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
vendor="${GIT_FCGI_VENDOR:-$here/../shared/vendor}"
cache="${GIT_FCGI_GIT_CACHE:-$HOME/.cache/git-fcgi}"
versions=("$@")
if [ "${#versions[@]}" -eq 0 ]; then
  for t in "$vendor"/git-*.tar.gz; do
    [ -e "$t" ] || continue
    v="${t##*/git-}"; versions+=("${v%.tar.gz}")
  done
fi
built() { [ -x "$cache/git-$1/usr/lib/git-core/git-http-backend" ] && [ -f "$cache/git-$1/.complete" ]; }
if [ "$check" = 1 ]; then
  for v in "${versions[@]}"; do built "$v" || exit 1; done
  exit 0
fi
[ "${#versions[@]}" -gt 0 ] || { echo "build-git: no git tarballs in $vendor" >&2; exit 0; }
mkdir -p "$cache"
for v in "${versions[@]}"; do
  dest="$cache/git-$v"
  if built "$v"; then
    echo "build-git: git $v cached in $dest"; continue
  fi
  tarball="$vendor/git-$v.tar.gz"
  [ -f "$tarball" ] || { echo "build-git: $tarball missing" >&2; exit 1; }
  work="$(mktemp -d "$cache/build-$v.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "build-git: building git $v (a few minutes)"
  tar -xzf "$tarball" -C "$work"
  opts=(prefix=/usr gitexecdir=/usr/lib/git-core NO_CURL=1 NO_EXPAT=1 NO_TCLTK=1 NO_GETTEXT=1
    NO_PERL=1 NO_PYTHON=1 NO_INSTALL_HARDLINKS=1 INSTALL_SYMLINKS=1)
  # git >= 2.52 builds a Rust part by default, as distributions will; without a working cargo
  # the build falls back to NO_RUST=1 (the Rust part replaces internals, not what git sends).
  if ! make -C "$work/git-$v" -j"$(nproc)" "${opts[@]}" >"$work/build.log" 2>&1; then
    if grep -q "NO_RUST" "$work/git-$v/Makefile"; then
      echo "build-git: git $v did not build with Rust (cargo: $(command -v cargo || echo none)); building with NO_RUST=1"
      opts+=(NO_RUST=1)
      make -C "$work/git-$v" -j"$(nproc)" "${opts[@]}" >>"$work/build.log" 2>&1 ||
        { tail -30 "$work/build.log" >&2; exit 1; }
    else
      tail -30 "$work/build.log" >&2; exit 1
    fi
  fi
  rm -rf "$dest"
  make -C "$work/git-$v" "${opts[@]}" DESTDIR="$dest" install >>"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; exit 1; }
  "$dest/usr/bin/git" --version >/dev/null
  touch "$dest/.complete"
  rm -rf "$work"; trap - EXIT
  echo "build-git: git $v in $dest"
done
