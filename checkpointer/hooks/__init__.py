"""Runtime hooks: publish a checkpoint that the runtime itself takes (CRIU action script), and guard
containers that ask to be restored (OCI hook). docs/hooks.md explains both."""
