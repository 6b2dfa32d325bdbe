"""sealer (Python): build, store, move and run ClusterImages.

One subpackage per concept: `build` (Kubefile -> layers -> image), `layers` (tar, whiteouts,
compression, overlay diff dirs), `image` (OCI types and sealer's annotations), `store` (the
local OCI layout), `registry` (push/pull on oras-py), `runtime` (hosts, delivery, phases) and
`cli` on top. `errors` is the one exception tree; `_fs` the atomic-write primitives; `rootfs`
the store/layers glue for diff dirs. The Kubefile language is the separate `kubefile_grammar`.
"""
