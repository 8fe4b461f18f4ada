"""Soundpost's benchmark suite: `python3 run.py bench`."""
