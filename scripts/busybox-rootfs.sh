#!/usr/bin/env bash
# Writes a deterministic busybox rootfs tarball (from Debian's busybox-static) to $1:
# the base image of the demo and the benchmarks, made with no registry.
set -euo pipefail
out=$1
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/tmp,home/app}
chmod 1777 "$root/tmp" "$root/var/tmp"; chmod 700 "$root/root"
install -m 0755 /bin/busybox "$root/bin/busybox"
busybox --list-full | while read -r p; do
  [ "$p" = bin/busybox ] && continue
  ln -sf "$(realpath -m --relative-to="/$(dirname "$p")" /bin/busybox)" "$root/$p"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' > "$root/etc/group"
chown 1000:1000 "$root/home/app"
sde=${SOURCE_DATE_EPOCH:-1700000000}
find "$root" -exec touch -h -d "@$sde" {} +
tar --sort=name --mtime="@$sde" --numeric-owner --pax-option=delete=atime,delete=ctime -C "$root" -cf "$out" .
