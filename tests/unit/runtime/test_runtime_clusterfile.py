"""Clusterfile reading, writing and errors; `sealer run` flags; the example in docs/clusterfile.md."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import ClusterError, ClusterfileError, UsageError
from builder.runtime.cluster import Cluster, HostAlias, HostSpec, Role, SSHSpec
from builder.runtime.clusterfile import (
    cluster_from_flags,
    dump_clusterfile,
    load_clusterfile,
    parse_clusterfile,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "clusterfile.md"

BASIC = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata:
  name: my-cluster
spec:
  image: docker.io/sealerio/kubernetes:v1.22.15
  ssh: {user: root, passwd: xxx, pk: /root/.ssh/id_rsa, pkPasswd: , port: "22"}
  hosts:
    - ips: [192.168.0.2, 192.168.0.3]
      roles: [master]
      ssh: {port: "2222"}
      env: [key=value]
    - ips: [192.168.0.4]
      roles: [node]
  env: [key1=value1, key2=value2;value3]
"""


def parse(text: str) -> Cluster:
    return parse_clusterfile(textwrap.dedent(text), path="Clusterfile")


# --- reading -----------------------------------------------------------------------------------


def test_sealer_v2_fields() -> None:
    c = parse(BASIC)
    assert c.name == "my-cluster"
    assert c.image == "docker.io/sealerio/kubernetes:v1.22.15"
    assert c.ssh == SSHSpec(user="root", port=22, password="xxx", key_files=("/root/.ssh/id_rsa",))
    assert [(h.ip, h.role, h.ssh.port) for h in c.hosts] == [
        ("192.168.0.2", Role.MASTER, 2222),
        ("192.168.0.3", Role.MASTER, 2222),
        ("192.168.0.4", Role.NODE, 22),
    ]
    # the host's ssh is laid over the cluster's (sealer's mergo.Merge)
    assert c.host("192.168.0.2").ssh.password == "xxx"
    assert c.host("192.168.0.2").env == {"key": "value"}
    assert c.host("192.168.0.4").env == {}
    assert c.env == {"key1": "value1", "key2": "value2;value3"}
    assert c.master0.ip == "192.168.0.2"
    assert c.documents == ()


def test_cluster_document_anywhere_and_documents_kept_in_order() -> None:
    text = (
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n---\n"
        + BASIC
        + "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking: {podSubnet: 10.0.0.0/8}\n"
        + "---\n"  # an empty trailing document is no document
    )
    c = parse(text)
    assert [d["kind"] for d in c.documents] == ["InitConfiguration", "ClusterConfiguration"]
    assert c.documents[1]["networking"] == {"podSubnet": "10.0.0.0/8"}


def test_numbers_mean_their_text_and_older_spellings() -> None:
    c = parse(
        """\
        apiVersion: sealer.cloud/v2
        kind: Cluster
        metadata: {name: "123", creationTimestamp: null}
        spec:
          image: kubernetes:v1.19.8
          cmd: [kubectl get pods]
          ssh: {passwd: 123456, port: 22}
          hosts: [{ips: [10.0.0.1], roles: [master]}]
        status: {}
        """
    )
    assert c.name == "123"
    assert c.ssh.password == "123456" and c.ssh.port == 22
    assert c.cmds == ("kubectl get pods",)


def test_extensions() -> None:
    c = parse(
        """\
        apiVersion: sealer.io/v2
        kind: Cluster
        spec:
          image: kubernetes:v1
          cmd_args: [--debug]
          appNames: [calico]
          ssh: {pk: [/k1, /k2], useAgent: false, knownHosts: /kh, verifyHostKeys: false,
                proxyJump: "jump@bastion:2200", connectTimeout: 2.5}
          hosts:
            - ips: [fd00::1]
              roles: [master]
              local: true
              labels: {disk: ssd, empty: }
              taints: ["dedicated=gpu:NoSchedule"]
          hostAliases: [{ip: fd00::100, hostnames: [registry.internal, reg]}]
        """
    )
    assert c.name == "my-cluster"  # sealer's default
    assert c.cmd_args == ("--debug",) and c.app_names == ("calico",)
    assert c.ssh == SSHSpec(
        key_files=("/k1", "/k2"),
        use_agent=False,
        known_hosts="/kh",
        verify_host_keys=False,
        proxy_jump="jump@bastion:2200",
        connect_timeout_s=2.5,
    )
    host = c.master0
    assert (
        host.local
        and host.labels == {"disk": "ssd", "empty": ""}
        and host.taints == ("dedicated=gpu:NoSchedule",)
    )
    assert c.host_aliases == (HostAlias("fd00::100", ("registry.internal", "reg")),)


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "Clusterfile"
    path.write_text(BASIC)
    assert load_clusterfile(path) == parse(BASIC)
    with pytest.raises(ClusterfileError, match="cannot read the Clusterfile"):
        load_clusterfile(tmp_path / "missing")


# --- errors: every one names file, line and field ----------------------------------------------

ERRORS = [
    # (replace this line of BASIC, with this, expected "Clusterfile:LINE: message")
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [10.0.0.x]",
        r"Clusterfile:13: spec.hosts\[1\].ips\[0\]: '10.0.0.x' is not an IP address",
    ),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [192.168.0.3]",
        r"Clusterfile:13: spec.hosts\[1\].ips\[0\]: 192.168.0.3 is both a master and a node \(also at spec.hosts\[0\].ips\[1\]\)",
    ),
    (
        "    - ips: [192.168.0.2, 192.168.0.3]",
        "    - ips: [192.168.0.2, 192.168.0.2]",
        r"Clusterfile:9: spec.hosts\[0\].ips\[1\]: 192.168.0.2 is listed twice",
    ),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [fd00::4]",
        r"Clusterfile:13: spec.hosts\[1\].ips\[0\]: fd00::4: all hosts must be IPv4 or all IPv6",
    ),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [10.0.0.1-10.0.0.3]",
        r"Clusterfile:13: spec.hosts\[1\].ips\[0\]: .* is not an IP address",
    ),
    ("    - ips: [192.168.0.4]", "    - ips: []", r"Clusterfile:13: spec.hosts\[1\].ips: is empty"),
    (
        "      roles: [node]",
        "      roles: [worker]",
        r"Clusterfile:14: spec.hosts\[1\].roles\[0\]: unknown role 'worker'",
    ),
    (
        "      roles: [node]",
        "      roles: [master, node]",
        r"Clusterfile:14: spec.hosts\[1\].roles: needs exactly one of master, node; has 2",
    ),
    ("      roles: [master]", "      roles: [node]", r"Clusterfile:8: spec.hosts: no host has role master"),
    (
        '      ssh: {port: "2222"}',
        '      ssh: {port: "70000"}',
        r"Clusterfile:11: spec.hosts\[0\].ssh.port: '70000' is not a port number",
    ),
    (
        '      ssh: {port: "2222"}',
        "      ssh: {port: ssh}",
        r"Clusterfile:11: spec.hosts\[0\].ssh.port: 'ssh' is not a port number",
    ),
    (
        '      ssh: {port: "2222"}',
        "      ssh: {password: x}",
        r"Clusterfile:11: spec.hosts\[0\].ssh.password: unknown field",
    ),
    (
        '      ssh: {port: "2222"}',
        "      ssh: {encrypted: true}",
        r"Clusterfile:11: spec.hosts\[0\].ssh.encrypted: sealer-encrypted passwords",
    ),
    (
        '      ssh: {port: "2222"}',
        "      ssh: {useAgent: maybe}",
        r"Clusterfile:11: spec.hosts\[0\].ssh.useAgent: expected true or false",
    ),
    (
        "      env: [key=value]",
        "      env: [novalue]",
        r"Clusterfile:12: spec.hosts\[0\].env\[0\]: 'novalue' is not KEY=VALUE",
    ),
    (
        "      env: [key=value]",
        "      env: [SEALER_ROLE=x]",
        r"Clusterfile:12: spec.hosts\[0\].env\[0\]: SEALER_ROLE is reserved",
    ),
    (
        "      env: [key=value]",
        "      env: {key: value}",
        r"Clusterfile:12: spec.hosts\[0\].env: expected a list",
    ),
    (
        "      env: [key=value]",
        "      envs: [key=value]",
        r"Clusterfile:12: spec.hosts\[0\].envs: unknown field",
    ),
    (
        "  env: [key1=value1, key2=value2;value3]",
        "  env: [key1=value1, 9x=1]",
        r"Clusterfile:15: spec.env\[1\]: '9x' is not a valid variable name",
    ),
    (
        "  env: [key1=value1, key2=value2;value3]",
        "  cmds: [a]\n  cmd: [b]",
        r"Clusterfile:16: spec.cmd: give cmd or cmds, not both",
    ),
    (
        "  env: [key1=value1, key2=value2;value3]",
        "  containerRuntime: {type: cri-o}",
        r"Clusterfile:15: spec.containerRuntime.type: container runtime 'cri-o' is not one of containerd, docker",
    ),
    (
        "  env: [key1=value1, key2=value2;value3]",
        "  image: again",
        r"Clusterfile:15: spec.image: is given twice",
    ),
    (
        "  image: docker.io/sealerio/kubernetes:v1.22.15",
        "  image: 'Bad Image'",
        r"Clusterfile:6: spec.image: ",
    ),
    (
        "  image: docker.io/sealerio/kubernetes:v1.22.15",
        "  image:",
        r"Clusterfile:6: spec.image: expected a string",
    ),
    (
        "  name: my-cluster",
        "  name: My_Cluster",
        r"Clusterfile:4: metadata.name: cluster name 'My_Cluster' is not a DNS-1123 label",
    ),
    ("  name: my-cluster", "  namespace: x", r"Clusterfile:4: metadata.namespace: unknown field"),
    (
        "apiVersion: sealer.io/v2",
        "apiVersion: sealer.cloud/v1",
        r"Clusterfile:1: apiVersion: 'sealer.cloud/v1' is not a Clusterfile version",
    ),
    ("kind: Cluster", "kind: Cluster\nextra: 1", r"Clusterfile:3: extra: unknown field"),
    ("  hosts:", "  hosts: 3\n  x:", r"Clusterfile:9: spec.x: unknown field"),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [192.168.0.4]\n      taints: [bad]",
        r"Clusterfile:14: spec.hosts\[1\].taints\[0\]: taint 'bad' is not key\[=value\]:Effect",
    ),
    (
        "      roles: [node]",
        "      roles: [node]\n      local: true\n    - ips: [192.168.0.9]\n      roles: [node]\n      local: true",
        r"Clusterfile:18: spec.hosts\[2\].local: only one host can be the local machine",
    ),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [192.168.0.4]\n      labels: {'bad key!': x}",
        r"Clusterfile:14: spec.hosts\[1\].labels.bad key!: label key 'bad key!' is not \[prefix/\]name",
    ),
    (
        "    - ips: [192.168.0.4]",
        "    - ips: [192.168.0.4]\n      labels: {example.com/tier: 'front end'}",
        r"Clusterfile:14: spec.hosts\[1\].labels.example.com/tier: label example.com/tier='front end': the value",
    ),
    (
        "  hosts:",
        "  hostAliases: [{ip: 10.0.0.9, hostnames: ['reg; rm -rf /']}]\n  hosts:",
        r"Clusterfile:8: spec.hostAliases\[0\]: host alias 10.0.0.9: 'reg; rm -rf /' is not a host name",
    ),
    (
        '  ssh: {user: root, passwd: xxx, pk: /root/.ssh/id_rsa, pkPasswd: , port: "22"}',
        "  ssh: {connectTimeout: 0}",
        r"Clusterfile:7: spec.ssh.connectTimeout: must be more than 0 seconds",
    ),
    (
        '  ssh: {user: root, passwd: xxx, pk: /root/.ssh/id_rsa, pkPasswd: , port: "22"}',
        "  ssh: {user: [a]}",
        r"Clusterfile:7: spec.ssh.user: expected a string",
    ),
    (
        '  ssh: {user: root, passwd: xxx, pk: /root/.ssh/id_rsa, pkPasswd: , port: "22"}',
        "  ssh: {user: root\n",
        r"Clusterfile:9: invalid YAML",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), ERRORS, ids=[e[2][:60] for e in ERRORS])
def test_errors_name_file_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in BASIC
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(BASIC.replace(old, new, 1), path="Clusterfile")
    err = info.value
    assert re.match(expected, err.message), err.message
    assert err.path == "Clusterfile"
    assert err.line == int(err.message.split(":")[1])
    assert "\n" not in err.message


def test_document_errors() -> None:
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:1: no kind: Cluster document$"):
        parse("apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n")
    with pytest.raises(
        ClusterfileError, match=r"^Clusterfile:18: kind ConfigMap \(apiVersion v1\) is not supported$"
    ) as info:
        parse(BASIC + "---\n# a ConfigMap\napiVersion: v1\nkind: ConfigMap\n")
    assert info.value.hint is not None and "Plugin and Config (sealer.io/v1)" in info.value.hint
    with pytest.raises(ClusterfileError, match=r"kind Secret \(apiVersion v1\) is not supported"):
        parse(BASIC + "---\napiVersion: v1\nkind: Secret\ndata: {a: b}\n")
    with pytest.raises(
        ClusterfileError, match=r"^Clusterfile:17: document 2: a second kind: Cluster document"
    ):
        parse(BASIC + "---\n" + BASIC)
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:17: document 2: missing kind"):
        parse(BASIC + "---\napiVersion: v1\nfoo: 1\n")
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:17: document 2: expected a mapping"):
        parse(BASIC + "---\n- a\n")
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:\d+: spec.hosts: missing"):
        parse("apiVersion: sealer.io/v2\nkind: Cluster\nspec: {image: k:v1}\n")
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:1: spec: missing"):
        parse("apiVersion: sealer.io/v2\nkind: Cluster\n")
    with pytest.raises(ClusterfileError, match=r"^Clusterfile:\d+: status: must be empty"):
        parse(BASIC + "status: {phase: Running}\n")


def test_errors_have_hints() -> None:
    with pytest.raises(ClusterfileError) as info:
        parse(BASIC.replace("roles: [node]", "roles: [worker]"))
    assert info.value.hint == "sealer calls worker hosts `node`"
    with pytest.raises(ClusterfileError) as info:
        parse(BASIC.replace("envs", "x").replace("  env: [key1", "  envv: [key1"))
    assert info.value.hint is not None and "image" in info.value.hint and "hosts" in info.value.hint


# --- writing -----------------------------------------------------------------------------------


def test_dump_round_trips_and_groups_hosts() -> None:
    c = parse(BASIC + "---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n")
    text = dump_clusterfile(c)
    assert parse_clusterfile(text) == c
    assert text.count("- ips:") == 2  # the two masters share one entry, as written
    assert "port: '22'" in text  # sealer's string port
    assert "passwd: xxx" in text  # secrets are kept: the saved state is 0600


def test_dump_refuses_what_a_clusterfile_cannot_say() -> None:
    ssh = SSHSpec(password="secret")
    host = HostSpec("10.0.0.1", (Role.MASTER,), SSHSpec())  # no password, under a cluster with one
    c = Cluster(name="c", image="k:v1", hosts=(host,), ssh=ssh)
    with pytest.raises(ClusterError, match=re.escape("host 10.0.0.1 unsets ssh passwd")):
        dump_clusterfile(c)


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not s.startswith("SEALER_")
)
_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_env = st.dictionaries(_names, _values, max_size=3)
_opt_text = st.none() | st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=10)
_ssh = st.builds(
    SSHSpec,
    user=st.none() | st.sampled_from(["root", "admin", "123"]),
    port=st.none() | st.integers(1, 65535),
    password=_opt_text,
    key_files=st.lists(st.sampled_from(["/k1", "/k 2", "~/.ssh/id"]), max_size=2, unique=True).map(tuple),
    passphrase=_opt_text,
    use_agent=st.booleans(),
    known_hosts=st.none() | st.just("/etc/kh"),
    verify_host_keys=st.booleans(),
    proxy_jump=st.none() | st.just("u@jump:2200"),
    connect_timeout_s=st.sampled_from([10, 2.5, 30]),
)


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    base = draw(_ssh)
    count = draw(st.integers(1, 6))
    ips = [
        f"10.1.{i // 250}.{i % 250 + 1}"
        for i in draw(st.lists(st.integers(0, 999), min_size=count, max_size=count, unique=True))
    ]
    hosts = []
    for index, ip in enumerate(ips):
        role = Role.MASTER if index == 0 else draw(st.sampled_from(Role))
        # a host's ssh is the cluster's with some fields overridden, as a Clusterfile can say
        overrides = draw(
            st.fixed_dictionaries(
                {}, optional={"port": st.integers(1, 65535), "user": st.just("ops"), "password": st.just("p")}
            )
        )
        hosts.append(
            HostSpec(
                ip,
                (role,),
                SSHSpec(**{**{f: getattr(base, f) for f in SSHSpec.__slots__}, **overrides}),
                draw(_env),
                draw(
                    st.dictionaries(
                        st.sampled_from(["a", "b/c"]), st.sampled_from(["", "x", "1"]), max_size=2
                    )
                ),
                tuple(draw(st.lists(st.sampled_from(["k=v:NoSchedule", "k:NoExecute"]), max_size=2))),
                local=index == 0 and draw(st.booleans()),
            )
        )
    return Cluster(
        name=draw(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)),
        image=draw(
            st.sampled_from(
                [
                    "kubernetes:v1.22.15",
                    "docker.io/sealerio/k3s:v1.25",
                    "127.0.0.1:5000/a/b@sha256:" + "a" * 64,
                ]
            )
        ),
        hosts=tuple(hosts),
        env=draw(_env),
        cmds=tuple(draw(st.lists(_values, max_size=2))),
        cmd_args=tuple(draw(st.lists(_values, max_size=2))),
        app_names=tuple(draw(st.lists(st.sampled_from(["calico", "app"]), max_size=2))),
        ssh=base,
        data_root=draw(st.sampled_from(["", "/data/sealer", "/opt/sealer_1.d/x-y"])),
        container_runtime=draw(st.sampled_from(["", "containerd", "docker"])),
        host_aliases=tuple(
            draw(
                st.lists(
                    st.builds(HostAlias, st.sampled_from(["10.9.9.9", "fd00::9"]), st.just(("h",))),
                    max_size=1,
                )
            )
        ),
        documents=tuple(
            draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "apiVersion": st.just("kubelet.config.k8s.io/v1beta1"),
                            "kind": st.just("KubeletConfiguration"),
                            "data": _env,
                        }
                    ),
                    max_size=2,
                )
            )
        ),
    )


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_load_dump_round_trip(c: Cluster) -> None:
    assert parse_clusterfile(dump_clusterfile(c)) == c


# --- flags -------------------------------------------------------------------------------------


def test_flags_and_clusterfile_agree() -> None:
    from_flags = cluster_from_flags(
        "docker.io/sealerio/kubernetes:v1.22.15",
        "192.168.0.2-192.168.0.3",
        "192.168.0.4",
        password="xxx",
        key_file="/root/.ssh/id_rsa",
        port=22,
        user="root",
        env={"key1": "value1"},
        cmds=["kubectl get nodes"],
        name="my-cluster",
    )
    from_file = parse(
        """\
        apiVersion: sealer.io/v2
        kind: Cluster
        metadata: {name: my-cluster}
        spec:
          image: docker.io/sealerio/kubernetes:v1.22.15
          env: [key1=value1]
          cmds: [kubectl get nodes]
          ssh: {user: root, passwd: xxx, pk: /root/.ssh/id_rsa, port: "22"}
          hosts:
            - {ips: [192.168.0.2, 192.168.0.3], roles: [master]}
            - {ips: [192.168.0.4], roles: [node]}
        """
    )
    assert from_flags == from_file
    assert dump_clusterfile(from_flags) == dump_clusterfile(from_file)  # `sealer gen` output


def test_flags_without_masters_mean_this_machine() -> None:
    c = cluster_from_flags("kubernetes:v1.22.15")
    assert c.name == "my-cluster"
    assert [(h.ip, h.role, h.local) for h in c.hosts] == [("127.0.0.1", Role.MASTER, True)]
    assert cluster_from_flags("kubernetes:v1", local_ip="192.168.1.10").master0.ip == "192.168.1.10"
    assert parse_clusterfile(dump_clusterfile(c)) == c


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masters": "10.0.0.x"}, "--masters: '10.0.0.x' is not an IP address"),
        ({"masters": "10.0.0.1", "nodes": "10.0.0.1-10.0.0.3"}, "--nodes: 10.0.0.1 is also in --masters"),
        ({"nodes": "10.0.0.2"}, "--nodes needs --masters"),
        ({"masters": "10.0.0.0-10.0.255.255"}, "--masters: '10.0.0.0-10.0.255.255' spans 65536 addresses"),
        ({"masters": "10.0.0.1-5"}, "--masters: '10.0.0.1-5': the end of a range is a full address"),
        ({"masters": "10.0.0.1", "port": 0}, "--port: ssh port 0 is outside 1-65535"),
        (
            {"masters": "10.0.0.1", "name": "Bad_Name"},
            "--cluster: cluster name 'Bad_Name' is not a DNS-1123 label",
        ),
        ({"masters": "10.0.0.1", "env": {"SEALER_ROLE": "x"}}, "-e: SEALER_ROLE is reserved"),
        ({"masters": "10.0.0.1", "image": "Not An Image"}, "IMAGE: "),
    ],
)
def test_flag_errors_name_the_flag(kwargs: dict[str, object], message: str) -> None:
    image = kwargs.pop("image", "kubernetes:v1.22.15")
    with pytest.raises(UsageError) as info:
        cluster_from_flags(image, **kwargs)  # type: ignore[arg-type]
    assert info.value.message.startswith(message), info.value.message


# --- the documentation -------------------------------------------------------------------------


def test_doc_example_loads() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    example = next(b for b in blocks if "kind: Cluster" in b)
    c = parse_clusterfile(example, path="docs/clusterfile.md")
    assert c.name == "my-cluster"
    assert len(c.masters) == 3 and len(c.nodes) == 3
    assert c.host("192.168.0.7").ssh.proxy_jump == "admin@bastion.example.com"
    assert c.host("192.168.0.7").ssh.password == "Sealer123"  # inherited from spec.ssh
    assert [d["kind"] for d in c.documents] == ["ClusterConfiguration", "KubeletConfiguration"]
    assert parse_clusterfile(dump_clusterfile(c)) == c
