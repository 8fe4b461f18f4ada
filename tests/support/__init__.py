"""Test infrastructure shared by test modules: real S3 peers and an independent SigV4."""
