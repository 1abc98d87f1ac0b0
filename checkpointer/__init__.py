"""ckpt: checkpoint running containers into OCI images and restore them anywhere."""
