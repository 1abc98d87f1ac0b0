"""ckpt's checkpoint image format (docs/format.md): config, layer roles, writing and reading."""
