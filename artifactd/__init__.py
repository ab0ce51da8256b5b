"""artifactd: a streaming file-download and artifact server."""

# The one place the version is written: setup.cfg reads it (attr:), `artifactd --version`
# reads the installed metadata built from it, and CHANGELOG.md names it.
__version__ = "0.1.0"
