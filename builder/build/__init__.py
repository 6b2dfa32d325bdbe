"""The build engine: a Kubefile and a context directory in, an image in the local store out.

`plan.make_plan` expands variables and resolves FROM per platform; `executor.build_image` runs
one step per instruction (steps/: copy, run, app) with the step and stat caches of `cache`,
writes each layer in one pass, bundles referenced container images (`bundle/`), and tags the
result. Progress is reported as `events`. Imports grammar, layers, store, image and registry;
never runtime or cli.
"""
