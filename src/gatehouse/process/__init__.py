"""Gatehouse as processes: the daemon that composes a config's services into one
process, and the harness that starts and stops such processes (demo, tests, bench)."""
