"""Layers: deterministic tar streams in and out of directory trees, overlay diff dirs.

Public modules: `compression` (Compression, open_compressor, open_decompressed), `tarwriter`
(TarEntry, TarWriter, walk_tree, walk_upperdir), `whiteout` (OCI and overlay whiteout forms),
`tarreader` (extract_layer: the one hardened unpacker), `safety` (the rules every entry of an
untrusted layer passes, shared with the runtime's stack check), `onepass` (LayerWriter: walk ->
tar -> diff_id -> compress -> sink in one pass), `overlay` (DiffDirs, mounted_rootfs),
`diffcheck` (compare_diff_dir: a diff dir against its layer tar, for `sealer fsck`).
Streams in, streams out: imports only `builder.errors`, `builder._fs` and `builder.image`; never
`builder.store`, the build or the runtime.
"""
