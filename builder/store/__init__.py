"""The local store: an OCI image layout under `$SEALER_ROOT/oci`, plus `tmp/`, `overlay2/`, `cache/`.

Public names: `layout.Store`/`default_root`, `identity.ImageRecord`/`image_id`/`remove_image`
(one IMAGE ID per image, as podman), `blobs.BlobStore`/`BlobWriter`
(verified, atomic, deduplicated blob writes and verifying reads), `refs.RefStore` (index.json
names under a lock), `gc.collect`/`gc_lock`/`GCResult`, `archive.save`/`load`.
`blobs` knows nothing of manifests (umoci's cas/casext split). Imports only `builder.image`,
`builder._fs` and `builder.errors`; never layers, build, registry, runtime or cli.
"""
