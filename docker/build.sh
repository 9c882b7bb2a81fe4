#!/usr/bin/env bash
# Builds the Metrobus image without any image registry.
#
# The image is docker/Dockerfile: `FROM ${BASE_IMAGE}` plus the binary.
#  - BASE_IMAGE set: that local image is the base (it must provide the
#    binary's shared libraries, e.g. a glibc distribution image).
#  - else, with the musl target and a musl C++ compiler installed: a static
#    musl build on `scratch`.
#  - else (the usual case here): a glibc release build, and a base image
#    made with `docker import` from a tarball of exactly the shared
#    libraries `ldd` lists for the binary (plus /etc/nsswitch.conf, a
#    passwd entry for nobody and /tmp). The base is tagged by its content
#    hash, so rebuilding with unchanged libraries imports nothing.
#
# Usage: docker/build.sh
# Environment:
#   IMAGE=metrobus:local        tag of the result
#   BASE_IMAGE=IMAGE            use this local base instead of generating one
#   METROBUS_BINARY=PATH        package this binary instead of building one
#   CARGO_TARGET_DIR            default $HOME/.cache/metrobus-target
# Prints the image tag on stdout; progress goes to stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metrobus-target}
image=${IMAGE:-metrobus:local}
base_image=${BASE_IMAGE:-}
binary=${METROBUS_BINARY:-}
musl_target=x86_64-unknown-linux-musl

log() { echo "docker/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the docker engine is not reachable (docker info failed)"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

musl_possible() {
    rustup target list --installed 2>/dev/null | grep -qx "$musl_target" \
        && { command -v x86_64-linux-musl-g++ >/dev/null || command -v musl-g++ >/dev/null; }
}

is_static() {
    local out
    out=$(ldd "$1" 2>&1) || return 0 # "not a dynamic executable"
    grep -q 'statically linked' <<<"$out"
}

if [[ -z $binary ]]; then
    if [[ -z $base_image ]] && musl_possible; then
        log "building a static musl binary (cargo build --release --workspace --target $musl_target)"
        (cd "$root" && cargo build --release --workspace --target "$musl_target") >&2
        binary=$CARGO_TARGET_DIR/$musl_target/release/metrobus
    else
        log "no musl target with a musl C++ compiler: building the glibc binary"
        # --workspace, not -p metrobus: -p unifies features differently and
        # rebuilds RocksDB instead of reusing the workspace build.
        (cd "$root" && cargo build --release --workspace) >&2
        binary=$CARGO_TARGET_DIR/release/metrobus
    fi
fi
[[ -x $binary ]] || die "no executable at $binary"
cp "$binary" "$context/metrobus"
# The release profile keeps line tables (hundreds of MB); the image does not need them.
if command -v strip >/dev/null; then
    strip --strip-debug "$context/metrobus"
fi
mkdir "$context/data"

# make_base: a base image of the binary's shared libraries; prints its tag.
make_base() {
    local rootfs=$context/rootfs tarball=$context/base.tar libs tag
    mkdir -p "$rootfs/etc" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    libs=$(ldd "$binary" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)
    [[ -n $libs ]] || die "ldd listed no libraries for $binary"
    for lib in $libs; do
        # Dereference: the file must exist under the path the loader asks for.
        cp --parents -L "$lib" "$rootfs/" || die "copying $lib"
    done
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' \
        >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tarball" .
    tag=metrobus-base:glibc-$(sha256sum "$tarball" | cut -c1-12)
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "base image $tag exists"
    else
        log "importing base image $tag from: $(echo $libs)"
        docker import "$tarball" "$tag" >&2 || die "docker import failed"
    fi
    echo "$tag"
}

if [[ -z $base_image ]]; then
    if is_static "$binary"; then
        base_image=scratch
    else
        base_image=$(make_base)
    fi
fi

log "building $image FROM $base_image"
docker build -f "$root/docker/Dockerfile" --build-arg "BASE_IMAGE=$base_image" \
    -t "$image" "$context" >&2 || die "docker build failed"

# Smoke test: the binary starts and finds every library.
docker run --rm "$image" --version >&2 || die "the image's binary does not run"
echo "$image"
