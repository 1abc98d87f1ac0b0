#!/bin/bash
# enter_root.sh ROOT COMMAND: run COMMAND (bash) with ROOT as the whole system, as on a machine
# of its own. fresh_root.py calls it under `unshare --mount --pid --fork --kill-child`: every mount
# made here lives in that mount namespace only, and every process started in the root (containers
# included) is killed when the namespace's first process ends.
#
# pivot_root, not chroot: runc makes "/" a recursive slave mount (fails where "/" is no mount
# point) and CRIU refuses to dump a task whose root differs from its mount namespace's root,
# which is what a chroot gives.
set -euo pipefail
root=$1 command=$2

mount --make-rprivate /
mount --bind "$root" "$root"
mount --rbind /dev "$root/dev"
# Not the host's /dev/shm: ckpt keeps memory images there.
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"          # with /sys/fs/cgroup, which runc needs
mount -t tmpfs -o mode=755,nosuid,nodev run "$root/run"
cd "$root"
pivot_root . mnt
# The old root leaves this namespace at once; the command sees only ROOT.
exec /usr/sbin/chroot . /bin/sh -c 'umount -l /mnt && exec "$@"' sh \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM=dumb ${ROOT_PIP_CERT:+PIP_CERT=$ROOT_PIP_CERT} /bin/bash -c "$command"
