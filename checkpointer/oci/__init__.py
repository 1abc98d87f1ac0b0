"""OCI data plumbing: descriptors, manifests, digests, deterministic tars and image layouts."""
