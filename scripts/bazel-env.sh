#!/usr/bin/env bash
# bazel-env.sh prepares an offline environment for Debian's Bazel 4.2.3 and
# rules_go v0.34.0, and writes a bazelrc that redirects the repositories an
# ordinary workspace fetches (with http_archive and friends) to local copies.
#
# Usage: scripts/bazel-env.sh [--dir DIR] [--print]
#   --dir DIR   where to prepare it (default: $HALLMARK_BAZEL_ENV or
#               <repo>/.hallmark/bazel-env)
#   --print     print the path of the bazelrc on stdout (default: log only)
#
# Then: bazel --bazelrc=DIR/bazelrc build //...
# The examples stay exactly what a user writes; only the bazelrc redirects them:
#   io_bazel_rules_go  copied from the Go module cache (go mod download)
#   go_sdk             Debian's golang-1.19-go, laid out as rules_go's go_local_sdk does
#   bazel_skylib, platforms, rules_java, rules_proto   Debian's packages
#   rules_cc           a tiny forwarding rules_cc (Debian's is too new for 4.2.3)
#   remote_coverage_tools  stub filegroups (bazel test needs them)
#   hallmark           this repository
# It is idempotent: a second run with the same inputs only rewrites the bazelrc.
set -euo pipefail

RULES_GO_VERSION=v0.34.0
GO_SDK_ROOT=${HALLMARK_GO_SDK:-/usr/lib/go-1.19}
SHARE=/usr/share/bazel

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/.." && pwd)
dir=${HALLMARK_BAZEL_ENV:-$repo_root/.hallmark/bazel-env}
print=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    --print) print=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bazel-env.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "bazel-env: $*" >&2; }
die() { echo "bazel-env: error: $*" >&2; exit 1; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
repos=$dir/repos

# Several test binaries may prepare the same directory at once: serialise.
exec 9>"$dir/.lock"
flock 9

# Check what we rely on, naming the Debian package that provides it.
[ -x "$GO_SDK_ROOT/bin/go" ] || die "no Go SDK at $GO_SDK_ROOT (apt-get install golang-1.19-go, or set HALLMARK_GO_SDK)"
for p in tools/skylib:bazel-skylib platforms:bazel-bootstrap rules/java:bazel-rules-java rules/proto:bazel-rules-proto; do
  [ -d "$SHARE/${p%%:*}" ] || die "missing $SHARE/${p%%:*} (apt-get install ${p##*:})"
done
command -v go >/dev/null || die "go is not on PATH (needed to download rules_go $RULES_GO_VERSION from the module proxy)"

# The stamp names every input; when it matches, the repositories are ready.
stamp_want="script=$(sha256sum "$0" | cut -c1-16) rules_go=$RULES_GO_VERSION sdk=$GO_SDK_ROOT:$(cat "$GO_SDK_ROOT/VERSION" 2>/dev/null | head -1)"
if [ "$(cat "$dir/.stamp" 2>/dev/null || true)" != "$stamp_want" ]; then
  log "preparing local repositories under $repos"
  rm -rf "$repos.tmp"
  mkdir -p "$repos.tmp"
  t=$repos.tmp

  # rules_go from the Go module cache (the files there are read-only: copy).
  modcache=$(go env GOMODCACHE)
  src=$modcache/github.com/bazelbuild/rules_go@$RULES_GO_VERSION
  if [ ! -f "$src/WORKSPACE" ]; then
    log "downloading github.com/bazelbuild/rules_go@$RULES_GO_VERSION"
    (cd "$dir" && GOFLAGS=-mod=mod go mod download github.com/bazelbuild/rules_go@$RULES_GO_VERSION) \
      || die "go mod download github.com/bazelbuild/rules_go@$RULES_GO_VERSION failed"
  fi
  [ -f "$src/WORKSPACE" ] || die "rules_go not found at $src after go mod download"
  cp -R "$src" "$t/io_bazel_rules_go"
  chmod -R u+w "$t/io_bazel_rules_go"

  # go_sdk: what rules_go's go_local_sdk generates (ROOT, BUILD.bazel from its
  # template, symlinks to the SDK), so go_register_toolchains(version=...)
  # works unchanged in the user's WORKSPACE.
  platforms=$(ls "$GO_SDK_ROOT/pkg/tool" | grep _ || true)
  [ "$(echo "$platforms" | wc -w)" = 1 ] || die "cannot detect the SDK platform in $GO_SDK_ROOT/pkg/tool: '$platforms'"
  goos=${platforms%%_*}; goarch=${platforms#*_}
  mkdir -p "$t/go_sdk"
  : > "$t/go_sdk/ROOT"
  echo 'workspace(name = "go_sdk")' > "$t/go_sdk/WORKSPACE"
  sed -e "s/{goos}/$goos/g" -e "s/{goarch}/$goarch/g" -e "s/{exe}//g" \
      -e "s/{rules_go_repo_name}/io_bazel_rules_go/g" \
      "$t/io_bazel_rules_go/go/private/BUILD.sdk.bazel" > "$t/go_sdk/BUILD.bazel"
  for e in src pkg bin lib; do ln -s "$GO_SDK_ROOT/$e" "$t/go_sdk/$e"; done

  # rules_cc: Debian's is too new for Bazel 4.2.3; forward to the native rules.
  mkdir -p "$t/rules_cc/cc"
  echo 'workspace(name = "rules_cc")' > "$t/rules_cc/WORKSPACE"
  : > "$t/rules_cc/BUILD"
  : > "$t/rules_cc/cc/BUILD"
  {
    echo '"""Forwards the rules_cc API to the rules built into Bazel (offline stand-in for rules_cc)."""'
    for r in cc_binary cc_library cc_test cc_import cc_proto_library cc_toolchain cc_toolchain_suite objc_library fdo_profile fdo_prefetch_hints; do
      printf '\ndef %s(**attrs):\n    """Forwards to native.%s."""\n    native.%s(**attrs)\n' "$r" "$r" "$r"
    done
  } > "$t/rules_cc/cc/defs.bzl"

  # remote_coverage_tools: bazel test wires these into every test action.
  mkdir -p "$t/remote_coverage_tools"
  echo 'workspace(name = "remote_coverage_tools")' > "$t/remote_coverage_tools/WORKSPACE"
  cat > "$t/remote_coverage_tools/BUILD" <<'BUILD'
# Offline stand-in: coverage collection is not supported in this environment.
package(default_visibility = ["//visibility:public"])

filegroup(name = "coverage_report_generator", srcs = [])

filegroup(name = "lcov_merger", srcs = [])

filegroup(name = "coverage_output_generator", srcs = [])
BUILD

  rm -rf "$repos"
  mv "$t" "$repos"
  echo "$stamp_want" > "$dir/.stamp"
else
  log "local repositories under $repos are up to date"
fi

# The bazelrc. Written every time (cheap), atomically.
rc=$dir/bazelrc
{
  echo "# Generated by scripts/bazel-env.sh: offline Bazel 4.2.3 + rules_go $RULES_GO_VERSION."
  echo "# Use with: bazel --bazelrc=$rc <command> ..."
  for cmd in build fetch query sync; do
    for kv in \
      "io_bazel_rules_go=$repos/io_bazel_rules_go" \
      "go_sdk=$repos/go_sdk" \
      "bazel_skylib=$SHARE/tools/skylib" \
      "platforms=$SHARE/platforms" \
      "rules_java=$SHARE/rules/java" \
      "rules_proto=$SHARE/rules/proto" \
      "rules_cc=$repos/rules_cc" \
      "remote_coverage_tools=$repos/remote_coverage_tools" \
      "hallmark=$repo_root"; do
      echo "$cmd --override_repository=$kv"
    done
  done
  echo "build --nosandbox_debug"
  echo "build --repository_cache=$dir/repository_cache"
  echo "fetch --repository_cache=$dir/repository_cache"
  echo "sync --repository_cache=$dir/repository_cache"
} > "$rc.tmp"
mv "$rc.tmp" "$rc"
log "wrote $rc"
if [ "$print" = 1 ]; then echo "$rc"; fi
