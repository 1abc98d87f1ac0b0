"""Pods: a group of containers that share a sandbox's namespaces, saved at one moment and restored
as one (docs/format.md section 9, docs/network.md "Pods"). model.py is the pod engine protocol;
runc.py and podman.py the engines; save.py, restore.py, inspect.py and convert.py the pipelines;
places.py where pod checkpoints are read from and written to."""
