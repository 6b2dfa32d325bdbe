"""The `sealer` command line: `main` (the group, the lazy command table, the one error-to-exit
mapping), one module per command group (`build`, `images`, `registry`), `output` (the only
place that prints: tables, JSON, progress). No logic beyond argument handling and output."""
