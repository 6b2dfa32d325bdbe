"""The `sealer` command line: `main` (the group, the lazy command table, the one error-to-exit
mapping), one module per command group (`build`, `images`, `registry`, `cluster`,
`completion`), `_options` (argument handling the groups share: the store, registry options, K=V).
Output: `output` (tables, JSON, the error line) and `progress` with `_bars` (bars and progress
lines on stderr) render; a command module echoes only its result (a digest, a plan, a document).
No logic beyond argument handling and output; the libraries print nothing."""
