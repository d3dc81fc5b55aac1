#!/usr/bin/env bash
# Builds the echoloop OCI image (contrib/Containerfile) from binaries built here, with no
# base image and no registry: stripped release builds of echoloop and echoloop-bench, the
# shared libraries `ldd` names for them (glibc, libgcc_s, libm) at the same paths, the
# dynamic loader, and a passwd/group entry for the non-root user, staged as the build
# context's rootfs/ and copied onto `FROM scratch`.
#
# Why not static: only the x86_64-unknown-linux-gnu target is installed where this was
# written (no musl target can be fetched), and a static glibc binary would still dlopen NSS
# modules to resolve the Service names the generator connects to. The dynamic libraries
# cost about 2.5 MB.
#
#   contrib/build-image.sh [--no-build] [--tag NAME]
#
# Environment: CONTAINER_TOOL (podman, else docker), CARGO_TARGET_DIR (default ./target).
# Prints the image name and its size on the last line: `image NAME SIZE_BYTES`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TAG="localhost/echoloop:$VERSION"
BUILD=1
while (($#)); do
	case $1 in
	--no-build) BUILD=0 ;;
	--tag) TAG=${2:?--tag needs a name}; shift ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build-image.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done
TOOL=${CONTAINER_TOOL:-$(command -v podman || command -v docker || true)}
[[ -n $TOOL ]] || { echo "build-image.sh: neither podman nor docker found" >&2; exit 1; }
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if ((BUILD)); then
	cargo build --release --bins >&2
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/echoloop-image.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOTFS=$STAGE/rootfs
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc"

for bin in echoloop echoloop-bench; do
	# The release profile keeps line tables for perf (debug = 1); the image does not need them.
	strip --strip-all -o "$ROOTFS/usr/local/bin/$bin" "$TARGET_DIR/release/$bin"
	# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader's own line
	# `/lib64/ld-linux-x86-64.so.2 (0x...)`; linux-vdso is the kernel's and has no file.
	ldd "$TARGET_DIR/release/$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
	mkdir -p "$ROOTFS$(dirname "$lib")"
	cp -L "$lib" "$ROOTFS$lib"
done

# The loader finds the libraries in its built-in multiarch directories (no ld.so.cache in the
# image). passwd/group name the user for tools that look it up; nsswitch.conf makes the
# resolver's order explicit: /etc/hosts, then DNS (Kubernetes mounts both files).
echo 'echoloop:x:65532:65532:echoloop:/nonexistent:/sbin/nologin' >"$ROOTFS/etc/passwd"
echo 'echoloop:x:65532:' >"$ROOTFS/etc/group"
echo 'hosts: files dns' >"$ROOTFS/etc/nsswitch.conf"

REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
"$TOOL" build --quiet -f "$ROOT/contrib/Containerfile" -t "$TAG" \
	--build-arg "VERSION=$VERSION" \
	--build-arg "REVISION=$REVISION" \
	--build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"$STAGE" >&2
echo "image $TAG $("$TOOL" image inspect --format '{{.Size}}' "$TAG")"
