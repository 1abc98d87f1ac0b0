"""File names, annotation keys and media types other engines use for checkpoints (docs/compat.md)."""

# The checkpoint archive (Podman export, CRI-O/containerd CRI checkpoint, kubelet checkpoint).
CHECKPOINT_DIR = "checkpoint"
PRE_CHECKPOINT_DIR = "pre-checkpoint"
CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
STATUS_DUMP = "status.dump"  # containerd CRI only
ROOTFS_DIFF = "rootfs-diff.tar"
# In a config.dump ckpt wrote for a runc checkpoint: rootfs-diff.tar is the whole root filesystem (a
# diff against no image), so ckpt can bring the archive back as the runc checkpoint it was.
CKPT_COMPLETE_ROOTFS = "dev.ckpt.rootfsComplete"
DELETED_FILES = "deleted.files"
DUMP_LOG = "dump.log"
NETWORK_STATUS = "network.status"
STATS_DUMP = "stats-dump"
CHECKPOINTED_PODS = "checkpointed.pods"  # a kubelet archive of several pods
POD_DUMP = "pod.dump"  # containerd's first pod archives (compat/pod_read.py)
POD_OPTIONS = "pod.options"  # CRI-O's and containerd's first pod archives
POD_MANIFEST = "checkpoint-manifest.json"  # CRI-O's and containerd's CheckpointPod directories

# spec.dump annotations.
CONTAINER_MANAGER = "io.container.manager"  # libpod | cri-o; containerd sets none
CRIO_ANNOTATIONS = "io.kubernetes.cri-o.Annotations"  # CRI-O refuses a spec.dump without it
K8S_CONTAINER_NAME = "io.kubernetes.container.name"
K8S_POD_NAME = "io.kubernetes.pod.name"
K8S_POD_NAMESPACE = "io.kubernetes.pod.namespace"

# Podman checkpoint images (libpod/define/annotations.go): manifest annotations.
PODMAN = "io.podman.annotations.checkpoint."
PODMAN_NAME = PODMAN + "name"
PODMAN_RAW_IMAGE_NAME = PODMAN + "rawImageName"
PODMAN_ROOTFS_IMAGE_ID = PODMAN + "rootfsImageID"
PODMAN_ROOTFS_IMAGE_NAME = PODMAN + "rootfsImageName"
PODMAN_VERSION = PODMAN + "podman.version"
PODMAN_CRIU_VERSION = PODMAN + "criu.version"  # an integer: 40101 is 4.1.1
PODMAN_RUNTIME_NAME = PODMAN + "runtime.name"  # must equal the restoring host's OCI runtime
PODMAN_RUNTIME_VERSION = PODMAN + "runtime.version"
PODMAN_CONMON_VERSION = PODMAN + "conmon.version"
PODMAN_HOST_ARCH = PODMAN + "host.arch"
PODMAN_HOST_KERNEL = PODMAN + "host.kernel"
PODMAN_CGROUPS_VERSION = PODMAN + "cgroups.version"  # v1 | v2
PODMAN_DISTRIBUTION_NAME = PODMAN + "distribution.name"
PODMAN_DISTRIBUTION_VERSION = PODMAN + "distribution.version"

# CRI-O (internal/annotations/checkpoint.go): only `name` makes CRI-O treat an image as a checkpoint.
CRIO = "io.kubernetes.cri-o.annotations.checkpoint."
CRIO_NAME = CRIO + "name"
CRIO_RAW_IMAGE_NAME = CRIO + "rawImageName"
CRIO_ROOTFS_IMAGE_ID = CRIO + "rootfsImageID"
CRIO_ROOTFS_IMAGE_NAME = CRIO + "rootfsImageName"
CRIO_VERSION = CRIO + "cri-o.version"
CRIO_CRIU_VERSION = CRIO + "criu.version"

# checkpointctl (lib/annotations.go); containerd 2.1-2.3 looks for `container.name` on the index.
CRIU = "org.criu.checkpoint."
CRIU_CONTAINER_NAME = CRIU + "container.name"
CRIU_ENGINE_NAME = CRIU + "engine.name"
CRIU_RUNTIME_NAME = CRIU + "runtime.name"
CRIU_ROOTFS_IMAGE_NAME = CRIU + "rootfsImageName"
CRIU_ROOTFS_IMAGE_ID = CRIU + "rootfsImageID"
CRIU_ROOTFS_USER_REQUESTED = CRIU + "rootfsImageUserRequested"
CRIU_POD_NAME = CRIU + "pod.name"
CRIU_POD_NAMESPACE = CRIU + "pod.namespace"
CRIU_VERSION = CRIU + "criu.version"
CRIU_HOST_ARCH = CRIU + "host.arch"
CRIU_HOST_KERNEL = CRIU + "host.kernel"
CRIU_RUNTIME_VERSION = CRIU + "runtime.version"

# containerd's legacy `ctr checkpoint` index (core/images/mediatypes.go, client/container.go).
CTD = "application/vnd.containerd.container."
CTD_CRIU_TAR = CTD + "criu.checkpoint.criu.tar"
CTD_PREDUMP_TAR = CTD + "criu.checkpoint.predump.tar"
CTD_RW_TAR = CTD + "rw.tar"
CTD_CONFIG = CTD + "checkpoint.config.v1+proto"
CTD_OPTIONS = CTD + "checkpoint.options.v1+proto"
CTD_RUNTIME_NAME = CTD + "checkpoint.runtime.name"
CTD_RUNTIME_OPTIONS = CTD + "checkpoint.runtime.options+proto"
CTD_ANN_RUNTIME = "io.containerd.checkpoint.runtime"
CTD_ANN_SNAPSHOTTER = "io.containerd.checkpoint.snapshotter"
