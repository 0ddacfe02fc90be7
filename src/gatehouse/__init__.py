"""Gatehouse: an identity-aware SSH access plane built around trusted clusters."""

__version__ = "0.1.0"
