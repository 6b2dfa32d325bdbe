"""Running ClusterImages on hosts: the cluster model, infra drivers, delivery and phases.

Public names: `cluster.Cluster`/`HostSpec`/`SSHSpec`/`Role`/`diff`,
`clusterfile.load_clusterfile`/`dump_clusterfile`/`cluster_from_flags`,
`env.merge_env`/`reserved_env`/`render_template`; drivers in `infra/`.
Imports `builder.registry`, `builder.store`, `builder.layers` and `builder.image`;
never `builder.build`, never `builder.cli`.
"""
