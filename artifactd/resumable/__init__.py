"""Resumable uploads: upload resources that collect an artifact's bytes over many requests."""
