"""Experiments built from the same steps as a run: ``oncofed ablate``."""
