"""Container images bundled into a ClusterImage's `registry/` directory.

`discover.discover_images`/`discover` find the images a build's files reference (manifests,
charts, imageList files; see docs/bundling.md for what is and is not taken), as `FoundImage`.
`distribution.write_distribution` writes images from the local store into a directory in the
docker-distribution filesystem layout that a stock registry serves. `step.bundle_images` is the
build's BUNDLE step (discover, pull through the injected puller, write the `registry/` layer).
Errors: `errors`. Never imports the registry client, the executor or the CLI.
"""
