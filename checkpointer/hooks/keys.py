"""Every name the hooks read, in one namespace: container annotations, config keys, environment.

Annotations are set on a container (runc config.json, `podman run --annotation`, pod annotations
under CRI-O); config keys live in the hooks config file that `ckpt hooks install` writes.
"""
from __future__ import annotations

PREFIX = "dev.ckpt."

# -- container annotations --------------------------------------------------------------------
PUBLISH_TO = "dev.ckpt.publish-to"          # REF: where the runtime's checkpoints of this container go
NAME = "dev.ckpt.name"                      # the container name recorded in the checkpoint
RESTORE_FROM = "dev.ckpt.restore-from"      # REF: this container should come back from that checkpoint
RESTORE_POLICY = "dev.ckpt.restore-policy"  # refuse (default) | warn: what the OCI hook does about it
CRIU_CONFIG = "org.criu.config"             # runc's own key: a CRIU config file for this container

# Annotations other managers set that name the container, and its image; best first.
NAME_ANNOTATIONS = (NAME, "io.kubernetes.container.name", "io.kubernetes.cri.container-name")
IMAGE_ANNOTATIONS = ("io.kubernetes.cri-o.ImageName", "io.kubernetes.cri.image-name")

# -- config keys (the hooks config file, JSON) ------------------------------------------------
CFG_PYTHON = "dev.ckpt.hooks.python"              # the interpreter the hooks run with
CFG_HOME = "dev.ckpt.hooks.home"                  # $CKPT_HOME for the hooks (store, credentials)
CFG_SPOOL = "dev.ckpt.hooks.spool"                # where jobs wait: default <home>/spool
CFG_ALLOW = "dev.ckpt.hooks.allow"                # destination prefixes a container may name
CFG_INSECURE = "dev.ckpt.hooks.insecure-registries"  # hosts reached over plain HTTP / unverified TLS
CFG_CA_DIR = "dev.ckpt.hooks.ca-dir"              # extra CA certificates (*.crt) for registries
CFG_DOCKER_CONFIG = "dev.ckpt.hooks.docker-config"  # directory of the config.json with credentials
CFG_RETRY_DELAYS = "dev.ckpt.hooks.retry-delays"  # seconds between background publish attempts
CFG_DEADLINE = "dev.ckpt.hooks.deadline"          # seconds the action script may take, at most
CFG_KEEP = "dev.ckpt.hooks.keep-published"        # records of published jobs kept for `status`
CFG_INSTALLED = "dev.ckpt.hooks.installed"        # what `ckpt hooks install` wrote (for uninstall)

# -- environment ------------------------------------------------------------------------------
ENV_CONFIG = "CKPT_HOOKS_CONFIG"  # path of the hooks config file
ENV_SPOOL = "CKPT_HOOKS_SPOOL"    # overrides dev.ckpt.hooks.spool
ENV_SWITCH = "CKPT_HOOKS"         # "off": the action script does nothing for this checkpoint
