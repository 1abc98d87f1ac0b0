"""Container runtimes ckpt drives; each is one small module behind the same few operations."""
