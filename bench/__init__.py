"""Gatehouse against OpenSSH on one machine: the harness behind `bench/run` (issue 5)."""
