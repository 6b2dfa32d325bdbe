"""OCI image data: pure values and their JSON, no file or network I/O (ggcr pkg/v1 + pkg/name).

Public names: `digest.Digest`, `descriptor.Descriptor`/`Platform`, `manifest.Manifest`,
`config.ImageConfig`/`ContainerConfig`/`History`, `index.Index`, `reference.Reference`,
`extension.ImageExtension`/`Application`/`Launch`/`AppConfig`/`ContainerImage`,
`metadata.RootfsMetadata`, media types and annotation keys in `mediatypes`.
Canonical JSON (and so every digest) is produced only by manifest, config and index.
Must not import `builder.store`, `builder.layers`, `builder.build` or anything doing I/O.
"""
