"""Media types ckpt reads and writes: the OCI ones and the checkpoint ones this project owns."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

# The checkpoint artifact (docs/format.md).
CHECKPOINT_ARTIFACT = "application/vnd.ckpt.checkpoint.v1"
CHECKPOINT_CONFIG = "application/vnd.ckpt.checkpoint.config.v1+json"
RUNTIME_SPEC = "application/vnd.ckpt.runtime-spec.v1+json"

# OCI layer encryption (ocicrypt) marks an encrypted layer by this suffix on its media type.
ENCRYPTED_SUFFIX = "+encrypted"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


def is_encrypted(media_type: str) -> bool:
    return media_type.endswith(ENCRYPTED_SUFFIX)
