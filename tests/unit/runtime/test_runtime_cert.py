"""Golden dry-run plans of `sealer cert` (phases cert, cert-renew, cert-check) for the three
runtimes, against what upstream documents: kubeadm "Reconfiguring a kubeadm cluster" (certSANs:
old apiserver.crt/key aside, `kubeadm init phase certs apiserver --config`, the static pod
restarted by moving its manifest out and back) and "Certificate Management with kubeadm"
(`certs check-expiration`, `certs renew all` then the control plane restarted); k3s `tls-san`
in a config.yaml.d drop-in and a restart, `k3s certificate rotate` while stopped; k0s
`spec.api.sans` and a restart. Also where the SANs are saved (so joins keep them) and the
`--alt-names` parser."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from builder.errors import ClusterError, UsageError
from builder.runtime.actions.cert import parse_alt_names
from builder.runtime.cluster import Cluster
from builder.runtime.facts import Facts
from builder.runtime.phases import JoinMasters, PlanState, RuntimeInit
from builder.runtime.phases.cert import Cert, CertCheck, CertRenew
from builder.runtime.plugins import get_plugin
from builder.runtime.plugins.kubernetes import KubernetesRuntime
from tests.unit.runtime import test_runtime_plugin_k0s as k0s_golden
from tests.unit.runtime import test_runtime_plugin_k3s as k3s_golden
from tests.unit.runtime import test_runtime_plugin_kubernetes as kubeadm_golden
from tests.unit.runtime._plugin_golden import PluginGolden

MASTERS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
SANS = ("api.example.com", "10.0.0.100")

KUBEADM = "/usr/local/bin/kubeadm"
CERT_CONFIG = "/etc/kubernetes/kubeadm-cert.yaml"
REGENERATE = (
    "for f in /etc/kubernetes/pki/apiserver.crt /etc/kubernetes/pki/apiserver.key; do "
    'if [ -f "$f" ]; then mv "$f" "$f.old" || exit 1; fi; done; '
    f"{KUBEADM} init phase certs apiserver --config {CERT_CONFIG}"
)


def restart(manifests: str, ip: str) -> str:
    parked, live = "/etc/kubernetes/sealer-cert-parked", "/etc/kubernetes/manifests"
    return (
        f"mkdir -p {parked} && for m in {manifests}; do "
        f'if [ -f {live}/"$m" ]; then mv {live}/"$m" {parked}/ || exit 1; fi; done; '
        f"sleep 20; for m in {manifests}; do "
        f'if [ -f {parked}/"$m" ]; then mv {parked}/"$m" {live}/ || exit 1; fi; done; '
        "i=0; until /usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf "
        f"--server https://{ip}:6443 get --raw /readyz >/dev/null 2>&1; do i=$((i + 1)); "
        f"if [ $i -ge 120 ]; then echo 'the API server at {ip} is not ready after 120s' >&2; exit 1; fi; "
        "sleep 1; done"
    )


def expiry(paths: str) -> str:
    return (
        f'for f in {paths}; do [ -f "$f" ] || continue; '
        'printf \'%-60s %s\\n\' "$f" "$(openssl x509 -noout -enddate -in "$f" | cut -d= -f2)" || exit 1; done'
    )


def planned(golden: PluginGolden, sans: tuple[str, ...] = SANS) -> tuple[Cluster, PlanState]:
    plugin = golden.plugin()
    c = plugin.with_cert_sans(golden.cluster(",".join(MASTERS), "10.0.0.4"), sans, golden.image.files)
    return c, PlanState(image=golden.image, plugin=plugin, targets=MASTERS)


def heredoc(command: str) -> Any:
    """The YAML documents a step writes with a here-document."""
    return list(yaml.safe_load_all(command.split("\n", 1)[1].rsplit("\n", 1)[0]))


def test_kubeadm_cert_regenerates_each_masters_apiserver_certificate_one_at_a_time() -> None:
    c, s = planned(kubeadm_golden.GOLDEN)
    steps = Cert(SANS).plan(c, Facts(), s)
    rows = [(st.host, st.stage, st.id) for st in steps]
    per_master = ["kubeadm-cert-version", "kubeadm-cert-config"]
    tail = ["kubeadm-cert-apiserver", "kubeadm-cert-restart"]
    assert rows == [
        *((MASTERS[0], 0, i) for i in (*per_master, "kubeadm-cert-upload-config", *tail)),
        *((MASTERS[1], 1, i) for i in (*per_master, *tail)),
        *((MASTERS[2], 2, i) for i in (*per_master, *tail)),
    ]
    by_id = {(st.host, st.id): st.command for st in steps}
    for ip in MASTERS:
        assert by_id[(ip, "kubeadm-cert-version")] == f"{KUBEADM} version -o short"
        assert by_id[(ip, "kubeadm-cert-apiserver")] == REGENERATE
        assert by_id[(ip, "kubeadm-cert-restart")] == restart("kube-apiserver.yaml", ip)
        config = by_id[(ip, "kubeadm-cert-config")]
        assert config.startswith(f"mkdir -p /etc/kubernetes && ( umask 077 && cat > {CERT_CONFIG} ) <<")
        init, conf = heredoc(config)
        assert init["kind"] == "InitConfiguration" and init["localAPIEndpoint"]["advertiseAddress"] == ip
        assert conf["kind"] == "ClusterConfiguration"
        assert conf["kubernetesVersion"] == "{{output:kube-version}}"
        assert conf["apiServer"]["certSANs"] == [
            "apiserver.cluster.local",
            "127.0.0.1",
            *SANS,
            *MASTERS,
        ]
    assert by_id[(MASTERS[0], "kubeadm-cert-upload-config")] == (
        f"{KUBEADM} init phase upload-config kubeadm --config {CERT_CONFIG}"
    )


def test_kubeadm_saves_the_sans_in_the_clusterconfiguration_so_inits_and_joins_keep_them() -> None:
    """The SANs live in the Clusterfile's ClusterConfiguration: a later run writes them into
    kubeadm.yaml; a joining master takes them from kubeadm-config, which cert uploaded."""
    c, s = planned(kubeadm_golden.GOLDEN)
    [conf] = [d for d in c.documents if d.get("kind") == "ClusterConfiguration"]
    assert conf["apiServer"]["certSANs"] == ["apiserver.cluster.local", "127.0.0.1", *SANS]  # type: ignore[index]
    init = next(st for st in RuntimeInit().plan(c, Facts(), s) if st.id == "kubeadm-config")
    assert heredoc(init.command)[1]["apiServer"]["certSANs"][:4] == [
        "apiserver.cluster.local",
        "127.0.0.1",
        *SANS,
    ]
    # a second cert adds to them, once each
    again = KubernetesRuntime().with_cert_sans(c, ("10.0.0.100", "b.example.com"), kubeadm_golden.FILES)
    [conf] = [d for d in again.documents if d.get("kind") == "ClusterConfiguration"]
    assert conf["apiServer"]["certSANs"][-3:] == [*SANS, "b.example.com"]  # type: ignore[index]
    assert JoinMasters().plan(c, Facts(), s)  # the joins still plan with the saved document


def test_kubeadm_cert_uploads_the_clusterconfiguration_init_wrote_plus_the_sans() -> None:
    """upload-config replaces kubeadm-config, which joins and `kubeadm upgrade` read: the cert
    configuration must be init's ClusterConfiguration (audit flags and volumes included) with
    only the new SANs added."""
    plain = kubeadm_golden.GOLDEN.cluster(",".join(MASTERS), "10.0.0.4")
    s = PlanState(image=kubeadm_golden.IMAGE, plugin=KubernetesRuntime(), targets=MASTERS)
    init = next(st for st in RuntimeInit().plan(plain, Facts(), s) if st.id == "kubeadm-config")
    c, s = planned(kubeadm_golden.GOLDEN)
    cert = next(st for st in Cert(SANS).plan(c, Facts(), s) if st.id == "kubeadm-cert-config")
    before, after = heredoc(init.command)[1], heredoc(cert.command)[1]
    assert before["kind"] == after["kind"] == "ClusterConfiguration"
    assert after["apiServer"]["certSANs"] == [*before["apiServer"]["certSANs"][:2], *SANS, *MASTERS]
    del before["apiServer"]["certSANs"], after["apiServer"]["certSANs"]
    assert after == before


def test_kubeadm_renew_and_check_expiration() -> None:
    c, s = planned(kubeadm_golden.GOLDEN)
    all_pods = "kube-apiserver.yaml kube-controller-manager.yaml kube-scheduler.yaml etcd.yaml"
    kubeconfig = 'mkdir -p "$HOME/.kube" && cp /etc/kubernetes/admin.conf "$HOME/.kube/config" && chmod 0600 "$HOME/.kube/config"'
    assert [(st.host, st.stage, st.id, st.command) for st in CertRenew().plan(c, Facts(), s)] == [
        row
        for stage, ip in enumerate(MASTERS)
        for row in (
            (ip, stage, "kubeadm-cert-renew", f"{KUBEADM} certs renew all"),
            (ip, stage, "kubeadm-cert-renew-restart", restart(all_pods, ip)),
            (ip, stage, "kubeadm-admin-kubeconfig", kubeconfig),
        )
    ]
    check = CertCheck().plan(c, Facts(), s)
    assert [(st.host, st.id, st.command, st.output, st.journal) for st in check] == [
        (
            ip,
            "kubeadm-cert-check",
            f"{KUBEADM} certs check-expiration",
            f"cert-expiration-{ip.replace('.', '-')}",
            False,
        )
        for ip in MASTERS
    ]


def test_k3s_cert_writes_tls_san_in_a_drop_in_and_restarts_each_server() -> None:
    c, s = planned(k3s_golden.GOLDEN)
    assert c == k3s_golden.GOLDEN.cluster(",".join(MASTERS), "10.0.0.4")  # k3s keeps them in state.json
    dropin = "/etc/rancher/k3s/config.yaml.d/90-sealer-cert.yaml"
    text = "tls-san:\n" + "".join(f"- {n}\n" for n in ("apiserver.cluster.local", *MASTERS, *SANS))
    write = (
        f"mkdir -p /etc/rancher/k3s/config.yaml.d && cat > {dropin}.tmp <<'SEALER_K3S_EOF' && "
        f"mv {dropin}.tmp {dropin}\n{text}SEALER_K3S_EOF"
    )
    assert [(st.host, st.stage, st.id, st.command) for st in Cert(SANS).plan(c, Facts(), s)] == [
        row
        for stage, ip in enumerate(MASTERS)
        for row in (
            (ip, stage, "k3s-cert-config", write),
            (ip, stage, "k3s-cert-restart", "systemctl restart k3s"),
        )
    ]
    rotate = "systemctl stop k3s && /usr/local/bin/k3s certificate rotate && systemctl start k3s"
    assert [(st.host, st.stage, st.id, st.command) for st in CertRenew().plan(c, Facts(), s)] == [
        (ip, stage, "k3s-cert-rotate", rotate) for stage, ip in enumerate(MASTERS)
    ]
    assert [(st.host, st.command) for st in CertCheck().plan(c, Facts(), s)] == [
        (ip, expiry("/var/lib/rancher/k3s/server/tls/*.crt")) for ip in MASTERS
    ]


def test_k0s_cert_sets_spec_api_sans_and_restarts_each_controller() -> None:
    c, s = planned(k0s_golden.GOLDEN)
    steps = Cert(SANS).plan(c, Facts(), s)
    assert [(st.host, st.stage, st.id) for st in steps] == [
        (ip, stage, i)
        for stage, ip in enumerate(MASTERS)
        for i in ("k0s-config", "k0s-cert-restart", "k0s-ready")
    ]
    for st in steps:
        if st.id == "k0s-config":
            [config] = heredoc(st.command)
            assert config["spec"]["api"]["sans"] == ["apiserver.cluster.local", *SANS, *MASTERS, "127.0.0.1"]
            assert config["spec"]["api"]["address"] == st.host
        if st.id == "k0s-cert-restart":
            assert st.command == "/usr/local/bin/k0s stop && /usr/local/bin/k0s start"
    [saved] = [d for d in c.documents if d.get("kind") == "ClusterConfig"]
    assert saved["spec"]["api"]["sans"] == ["apiserver.cluster.local", *SANS]  # type: ignore[index]
    renew = [(st.host, st.id) for st in CertRenew().plan(c, Facts(), s)]
    assert renew == [(ip, i) for ip in MASTERS for i in ("k0s-cert-restart", "k0s-ready")]
    assert [(st.host, st.command) for st in CertCheck().plan(c, Facts(), s)] == [
        (ip, expiry("/var/lib/k0s/pki/*.crt /var/lib/k0s/pki/etcd/*.crt")) for ip in MASTERS
    ]


def test_workers_take_no_part_and_the_none_runtime_refuses() -> None:
    c, s = planned(kubeadm_golden.GOLDEN)
    assert {st.host for st in Cert(SANS).plan(c, Facts(), s)} == set(MASTERS)
    with pytest.raises(ClusterError, match=r"^runtime none has no API server certificate$"):
        get_plugin("none").with_cert_sans(c, SANS, {})


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("api.example.com", ("api.example.com",)),
        ("API.Example.com, 10.0.0.1 ,10.0.0.1", ("api.example.com", "10.0.0.1")),
        ("*.apps.example.com,fd00::0001,localhost", ("*.apps.example.com", "fd00::1", "localhost")),
    ],
)
def test_alt_names_are_ips_or_dns_names(text: str, names: tuple[str, ...]) -> None:
    assert parse_alt_names(text) == names


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a,,b",
        "bad name",
        "-lead.example.com",
        "trail-.example.com",
        "a..b",
        "10.0.0.300",
        "x" * 64,
        "under_score.example.com",
        "example.com.",
        "a/b",
        "*.",
        "host;rm -rf /",
        "é.example.com",
    ],
)
def test_alt_names_that_are_neither_ip_nor_dns_name_are_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_alt_names(text)
    assert err.value.message.startswith("--alt-names: ") and "\n" not in err.value.message
    assert err.value.exit_code == 2
