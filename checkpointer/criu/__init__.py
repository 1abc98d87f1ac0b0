"""CRIU plumbing: version and feature probes, and decoding of CRIU image files with pycriu."""
