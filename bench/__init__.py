"""The `make bench` harness: artifactd beside nginx and aiohttp's FileResponse, same files,
same machine, one run (see docs/performance.md)."""
