"""`python -m artifactd` runs the CLI."""

from artifactd.cli import main

main()
