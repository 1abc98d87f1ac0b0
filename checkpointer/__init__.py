"""ckpt: checkpoint running containers into OCI images and restore them anywhere."""
__version__ = "0.1.0"
