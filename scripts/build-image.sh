#!/usr/bin/env bash
# Assembles the Fulcrum operator image offline, without pulling a base image: an OCI image
# layout built from scratch with umoci, holding the locally built `fulcrum` binary, the
# shared libraries it links (with the dynamic loader), the CA certificates and a passwd
# entry for the non-root user 65532 — the same root filesystem deploy/Dockerfile builds.
# Then smoke-tests it: `podman run` where this machine allows it, and in any case the
# unpacked image's root filesystem runs `fulcrum --version` with only its own files
# (chroot), and the image config is checked (user, entrypoint, command, port).
#
# Usage: scripts/build-image.sh [--binary PATH] [--out DIR]
#   --binary PATH  use this binary instead of building `cargo build --release -p fulcrum`
#   --out DIR      where the OCI layout goes (default target/image/oci), tag fulcrum:VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

binary=""
out="$root/target/image/oci"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install umoci skopeo" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [ -z "$binary" ]; then
  cargo build --release --locked -p fulcrum --bin fulcrum
  binary="$root/target/release/fulcrum"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The root filesystem: the same steps as the Dockerfile's build stage.
rootfs="$work/rootfs"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
cp "$binary" "$rootfs/fulcrum"
# Line tables help profiling on a build machine, not in the image.
strip --strip-debug "$rootfs/fulcrum"
ldd "$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$rootfs"
done
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
echo 'fulcrum:x:65532:65532:fulcrum:/nonexistent:/sbin/nologin' > "$rootfs/etc/passwd"
echo 'fulcrum:x:65532:' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

# The OCI layout: an empty image, its bundle filled with the root filesystem, repacked.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
image="$out:fulcrum-$version"
umoci init --layout "$out"
umoci new --image "$image"
umoci unpack --image "$image" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$image" "$work/bundle"
umoci config --image "$image" \
  --author "Fulcrum" \
  --config.user 65532:65532 \
  --config.entrypoint /fulcrum \
  --config.cmd run --config.cmd --dry-run \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.exposedports 8080/tcp \
  --config.label "org.opencontainers.image.title=fulcrum" \
  --config.label "org.opencontainers.image.version=$version"
umoci gc --layout "$out"

echo "== image $image"
skopeo inspect --config "oci:$image" > "$work/config.json"
python3 - "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["config"]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/fulcrum"], c["Entrypoint"]
assert c["Cmd"] == ["run", "--dry-run"], c["Cmd"]
assert "8080/tcp" in c["ExposedPorts"], c["ExposedPorts"]
print("config: user", c["User"], "entrypoint", c["Entrypoint"], "cmd", c["Cmd"], "ports", list(c["ExposedPorts"]))
PY
size=$(du -sb "$out" | cut -f1)
echo "layout: $out ($((size / 1024 / 1024)) MiB); files in the image:"
umoci unpack --image "$image" "$work/check" >/dev/null
(cd "$work/check/rootfs" && find . -type f | sort | sed 's/^/  /')

echo "== smoke test: the image's own root filesystem runs fulcrum --version (chroot)"
chroot --userspec=65532:65532 "$work/check/rootfs" /fulcrum --version

echo "== smoke test: podman run"
if podman run --rm --network=none "oci:$image" --version 2>"$work/podman.err"; then
  echo "podman run: ok"
else
  echo "podman run: not possible on this machine ($(tail -n 1 "$work/podman.err"))"
fi
