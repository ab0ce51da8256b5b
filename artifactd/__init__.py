"""artifactd: a streaming file-download and artifact server."""

__version__ = "0.1.0"
