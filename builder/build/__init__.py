"""The build engine: a Kubefile and a context directory in, an image in the local store out.

`plan.make_plan` expands variables and resolves FROM per platform; `executor.build_image` runs
one step per instruction (steps/: copy, run, app; `draft` holds the image between steps) with
the keys and caches of `cache`, writes each layer in one pass (`layer`), bundles referenced
container images (`bundle/`), writes Metadata, config and manifest (`output`) and tags the
result. Progress is reported as `events`. Registry access is injected (`pull.Puller`). Imports
grammar, layers, store and image; never registry, runtime or cli.
"""
