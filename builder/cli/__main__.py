"""`python -m builder.cli` runs the `sealer` command."""

from builder.cli.main import main

main()
