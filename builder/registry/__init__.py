"""Moving images between the local store and OCI registries, on top of oras-py.

Public names: `client.RegistryClient` (push, pull, resolve, exists, login, logout) and
`client.RegistryOptions`; the progress events in `events`; `auth` (docker config.json).
`_oras.OrasRegistry` (oras-py's Registry, subclassed) moves the bytes; `errors` maps HTTP and
network failures into `builder.errors`. Imports `builder.store` and `builder.image` only; never
layers, build, runtime or cli.
"""
