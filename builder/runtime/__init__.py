"""Running ClusterImages on hosts: the cluster model, infra drivers, delivery and phases.

Public names: `cluster.Cluster`/`HostSpec`/`SSHSpec`/`Role`/`diff`,
`clusterfile.load_clusterfile`/`dump_clusterfile`/`cluster_from_flags`,
`env.merge_env`/`reserved_env`/`render_template`; drivers in `infra/`.
Imports `builder.registry`, `builder.store`, `builder.layers` and `builder.image`;
never `builder.build`, never `builder.cli`.

Inside, cluster <- clusterfile/env <- plugins <- phases <- runner <- actions: a module imports
only from its own layer or lower ones (tests/unit/test_import_rules.py holds this):
  cluster           cluster (cluster_hosts, cluster_addresses, cluster_registry, cluster_fields),
                    events, facts (the values every layer reads)
  clusterfile/env   clusterfile (clusterfile_reader, clusterfile_cluster, clusterfile_hosts,
                    clusterfile_writer, cluster_flags, ...), _bounded_yaml, env,
                    state (the journal), infra/ (drivers)
  plugins           plugins/
  phases            phases/, delivery (_delivery_image, _delivery_plan, _delivery_shell,
                    _stackcheck), fanout (fanout_fetch, fanout_waves, _fanout_shell),
                    image_configs, dryrun
  runner            runner
  actions           actions/
"""
