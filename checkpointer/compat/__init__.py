"""Other engines' checkpoints: read Podman, CRI-O, containerd, kubelet and checkpointctl formats into
ckpt's format, and write ckpt checkpoints in the shapes those engines restore (docs/compat.md)."""
