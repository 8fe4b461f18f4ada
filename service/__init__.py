"""Soundpost: signed-in users upload audio from the browser straight to S3."""

__version__ = "0.1.0"
