"""Annotation keys: OCI's predefined ones, checkpointctl's `org.criu.checkpoint.*`, and ckpt's own."""

# OCI predefined (image-spec annotations.md).
CREATED = "org.opencontainers.image.created"
REF_NAME = "org.opencontainers.image.ref.name"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
TITLE = "org.opencontainers.image.title"

# checkpointctl (lib/annotations.go): readers of those tools recognise a checkpoint by these.
CRIU_PREFIX = "org.criu.checkpoint."
CRIU_ENGINE_NAME = CRIU_PREFIX + "engine.name"
CRIU_ENGINE_VERSION = CRIU_PREFIX + "engine.version"
CRIU_CONTAINER_NAME = CRIU_PREFIX + "container.name"
CRIU_RUNTIME_NAME = CRIU_PREFIX + "runtime.name"
CRIU_RUNTIME_VERSION = CRIU_PREFIX + "runtime.version"
CRIU_VERSION = CRIU_PREFIX + "criu.version"
CRIU_HOST_ARCH = CRIU_PREFIX + "host.arch"
CRIU_HOST_KERNEL = CRIU_PREFIX + "host.kernel"
CRIU_CGROUP_VERSION = CRIU_PREFIX + "cgroup.version"
CRIU_ROOTFS_IMAGE_NAME = CRIU_PREFIX + "rootfsImageName"

# ckpt's own namespace (docs/format.md, docs/hooks.md).
CKPT_PREFIX = "dev.ckpt."
LAYER_ROLE = CKPT_PREFIX + "layer.role"
