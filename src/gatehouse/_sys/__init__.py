"""Private plumbing: file descriptors, heap tuning, byte pumps, asyncssh's AES-GCM shim."""
