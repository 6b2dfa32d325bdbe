"""The stand-in framework on its own, locally: locked JSON state, the control plane and its
client (in a thread on 127.0.0.1), the YAML subset against PyYAML, the zipapp, sd_notify, and
the systemctl stand-in driving a real detached service in a temporary root
(STANDIN_SYSTEMD_ROOT), its drop-ins, command-line expansion and "-" prefix. The k3s stand-in's
pure parts (tokens, config files) are here too; everything k3s does over the network is the e2e
test's (test_runtime_k3s.py).

Over the house ~400 lines: one file for the stand-in framework, as tests/standins/README.md
describes it; a test per behaviour an e2e test relies on, each short."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.standins import core, k3s, make_bin_dir, systemctl_zipapp, systemd
from tests.standins.core import ApiClient, ApiError, StateFile

# --- StateFile -------------------------------------------------------------------------------------


def test_state_file_round_trip_and_a_failed_edit_writes_nothing(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "d" / "state.json")
    assert state.read() == {}
    with state.edit() as data:
        data["a"] = [1, 2]
    assert state.read() == {"a": [1, 2]}
    with pytest.raises(RuntimeError), state.edit() as data:
        data["a"] = "changed"
        raise RuntimeError("boom")
    assert state.read() == {"a": [1, 2]}
    assert sorted(p.name for p in state.path.parent.iterdir()) == ["state.json", "state.json.lock"]


def test_state_file_edits_are_serialised(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")

    def bump() -> None:
        for _ in range(40):
            with state.edit() as data:
                value = data.get("n", 0)
                time.sleep(0)  # invite a lost update if the lock did not hold
                data["n"] = value + 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert state.read() == {"n": 160}


# --- the control plane -----------------------------------------------------------------------------


def test_join_checks_the_token_and_its_roles(api: ApiClient) -> None:
    server_token = api.create_token("server", value="s3cret", allows=("server", "agent"))
    agent_token = api.create_token("agent")
    assert server_token == "s3cret" and len(agent_token) == 32
    result = api.join(server_token, "server", "m0", "10.0.0.1", "v1", member=True, roles="etcd")
    assert result["node"]["name"] == "m0" and result["node"]["ready"] is True
    assert [m["name"] for m in result["members"]] == ["m0"]
    api.join(server_token, "agent", "w0", "10.0.0.2", "v1")  # a server token admits agents
    api.join(agent_token, "agent", "w1", "10.0.0.3", "v1")
    with pytest.raises(ApiError) as info:
        api.join(agent_token, "server", "m1", "10.0.0.4", "v1", member=True)
    assert info.value.status == 403 and "not valid for a server join" in info.value.message
    with pytest.raises(ApiError) as info:
        api.join("wrong", "agent", "w2", "10.0.0.5", "v1")
    assert (info.value.status, info.value.message) == (403, "token is not valid (unknown token)")
    assert [n["name"] for n in api.nodes()] == ["m0", "w0", "w1"]
    assert [m["name"] for m in api.members()] == ["m0"]


def test_an_expired_token_is_refused(api: ApiClient) -> None:
    token = api.create_token("agent", ttl_s=0.05)
    time.sleep(0.1)
    with pytest.raises(ApiError, match="expired"):
        api.join(token, "agent", "w0", "10.0.0.2", "v1")


def test_a_node_name_is_bound_to_its_password_until_deleted(api: ApiClient) -> None:
    token = api.create_token("agent")
    api.join(token, "agent", "w0", "10.0.0.2", "v1", node_password="p1")
    api.join(token, "agent", "w0", "10.0.0.2", "v2", node_password="p1")  # a restart: fine
    with pytest.raises(ApiError, match="node password rejected"):
        api.join(token, "agent", "w0", "10.0.0.9", "v1", node_password="p2")
    api.delete_node("w0")
    api.join(token, "agent", "w0", "10.0.0.9", "v1", node_password="p2")
    assert api.get_node("w0")["ip"] == "10.0.0.9"


def test_nodes_patch_delete_members_secrets_and_events(api: ApiClient) -> None:
    token = api.create_token("server")
    api.join(token, "server", "m0", "10.0.0.1", "v1", member=True)
    api.join(token, "server", "m1", "10.0.0.2", "v1", member=True)
    assert api.patch_node("m1", unschedulable=True)["unschedulable"] is True
    before = api.get_node("m1")["last_seen"]
    time.sleep(0.01)
    assert api.patch_node("m1", heartbeat=True)["last_seen"] > before
    with pytest.raises(ApiError) as info:
        api.patch_node("m1", joined_at=0)
    assert info.value.status == 400
    api.join(token, "server", "m1", "10.0.0.2", "v2", member=True)  # a restart keeps the cordon
    assert api.get_node("m1")["unschedulable"] is True and api.get_node("m1")["version"] == "v2"
    api.delete_node("m1")
    api.remove_member("m1")
    for call in (lambda: api.get_node("m1"), lambda: api.delete_node("m1"), lambda: api.remove_member("m1")):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.status == 404
    api.put_secret("a/b", "value")
    assert api.get_secret("a/b") == "value"
    api.put_secret("short", "x", ttl_s=0.05)
    time.sleep(0.1)
    with pytest.raises(ApiError, match="not found"):
        api.get_secret("short")
    reasons = [(e["reason"], e["name"]) for e in api.events()]
    assert reasons == [
        ("TokenCreated", "server"),
        ("Joined", "m0"),
        ("Joined", "m1"),
        ("Patched", "m1"),
        ("Joined", "m1"),
        ("Deleted", "m1"),
        ("MemberRemoved", "m1"),
    ]
    assert token not in json.dumps(api.events())  # events never carry token values


def test_an_unreachable_server_is_status_0(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ApiClient(f"https://127.0.0.1:{port}", timeout_s=1)
    assert not client.healthy()
    with pytest.raises(ApiError) as info:
        client.nodes()
    assert info.value.status == 0 and "cannot reach" in info.value.message
    with pytest.raises(ApiError, match="bad server URL"):
        ApiClient("127.0.0.1:6443")


# --- ports, notify ---------------------------------------------------------------------------------


def test_hold_ports_shows_the_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    held = core.hold_ports([0], "127.0.0.1")
    port = held[0].getsockname()[1]
    try:
        with pytest.raises(SystemExit) as info:
            core.hold_ports([port], "127.0.0.1")
        assert info.value.code == 1
    finally:
        held[0].close()


def test_notify_ready_sends_ready_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert core.notify_ready() is False
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert core.notify_ready("up") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=up"


# --- YAML subset -----------------------------------------------------------------------------------

YAML_DOCS = [
    "write-kubeconfig-mode: \"0644\"\ntls-san:\n  - a.example\n  - 10.0.0.1\ndisable: [traefik, 'servicelb']\n",
    'node-label:\n- "a=b"\ncluster-init: true\nport: 6443\nratio: 1.5\nnothing: ~\nempty:\n',
    'mirrors:\n  docker.io:\n    endpoint:\n      - "http://r:5000"\nconfigs:\n  "r:5000":\n'
    "    tls: {insecure_skip_verify: true}\n    auth: {username: a, password: 'it''s'}\n",
    "---\n- name: a  # comment\n  value: '#not a comment'\n- name: b\n- plain\n- [1, 2]\n",
    "just a scalar",
    "",
]


@pytest.mark.parametrize("text", YAML_DOCS)
def test_load_yaml_agrees_with_pyyaml(text: str) -> None:
    assert core.load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x 1\nb: *x\n", "x.yaml:1: '&'"),
        ("a: |\n  text\n", "x.yaml:1: '|'"),
        ("a: !!str 1\n", "x.yaml:1: '!'"),
        ("a: 1\na: 2\n", "x.yaml:2: duplicate key 'a'"),
        ("a: 1\n  b: 2\n", "x.yaml:2: unexpected indentation"),
        ("a\nb\n", "x.yaml:1: multi-line plain scalars"),
        ("a: [1, 2\n", "x.yaml:1: unterminated flow sequence"),
        ("a: 1\n---\nb: 2\n", "x.yaml:2: only one document"),
    ],
)
def test_load_yaml_refuses_what_it_does_not_read(text: str, message: str) -> None:
    with pytest.raises(core.YamlError) as info:
        core.load_yaml(text, "x.yaml")
    assert str(info.value).startswith(message)


# --- zipapp ----------------------------------------------------------------------------------------


def test_write_zipapp_is_deterministic_and_self_contained(tmp_path: Path) -> None:
    a = core.write_zipapp("standins.k3s:main", tmp_path / "a", files={"version": b"v1.2.3"})
    b = core.write_zipapp("standins.k3s:main", tmp_path / "b", files={"version": b"v1.2.3"})
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(b"#!/usr/bin/python3\n") and os.access(a, os.X_OK)
    # run from a directory with nothing of this checkout on sys.path
    proc = subprocess.run([str(a), "--version"], capture_output=True, text=True, cwd="/", env={}, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("k3s version v1.2.3+k3s1 (")
    with pytest.raises(ValueError):
        core.write_zipapp("tests.standins.k3s:main", tmp_path / "c")


def test_make_bin_dir_writes_what_upstream_yaml_names(tmp_path: Path) -> None:
    out = make_bin_dir("k3s", tmp_path / "bin", "v1.30.1")
    (images,) = out.glob("k3s-airgap-images-*.tar.zst")
    assert sorted(p.name for p in out.iterdir()) == sorted(["k3s", "install.sh", images.name])
    assert images.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    proc = subprocess.run([str(out / "k3s"), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.stdout.split()[2] == "v1.30.1+k3s1"
    assert "INSTALL_K3S_SKIP_DOWNLOAD" in (out / "install.sh").read_text()


# --- the k3s stand-in's pure parts -----------------------------------------------------------------


def test_k3s_tokens_carry_the_ca_hash() -> None:
    token = k3s.format_token("CA", "server", "abc")
    ca_hash, secret = k3s.parse_token(token)
    assert token.startswith("K10") and token.endswith("::server:abc") and secret == "abc"
    assert ca_hash == k3s._sha256("CA")
    assert k3s.parse_token("bare") == (None, "bare")
    with pytest.raises(SystemExit):
        k3s.parse_token("K10nothex::server:x")


def test_k3s_config_yaml_becomes_flags_and_must_be_a_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("node-label: [a=b, c=d]\ncluster-init: true\nnode-ip: 10.0.0.1\nnot-a-flag: 1\n")
    args = k3s._config_args(k3s._parser("server"), config)
    assert args == ["--node-label=a=b", "--node-label=c=d", "--cluster-init", "--node-ip=10.0.0.1"]
    assert "Unknown flag --not-a-flag found in config.yaml, skipping" in capsys.readouterr().err
    config.write_text("- a\n- b\n")
    with pytest.raises(SystemExit):
        k3s._config_args(k3s._parser("server"), config)
    assert "must be a YAML mapping" in capsys.readouterr().err
    registries = tmp_path / "registries.yaml"
    registries.write_text('mirrors:\n  docker.io:\n    endpoint: ["http://r:5000"]\n')
    k3s._check_registries(registries)
    registries.write_text("mirrors:\n  docker.io:\n    endpoint: http://r:5000\n")
    with pytest.raises(SystemExit):
        k3s._check_registries(registries)
    assert "endpoint must be a list" in capsys.readouterr().err


# --- the systemctl stand-in ------------------------------------------------------------------------

SERVICE = """\
import json, os, socket, sys, time
out = sys.argv[1]
with open(out + ".argv", "w") as f:
    json.dump(sys.argv[1:], f)
with open(out, "w") as f:
    # LC_CTYPE: python sets it in its own environment (PEP 538 locale coercion)
    json.dump({k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LC_CTYPE")}, f)
if sys.argv[2] == "fail":
    sys.exit(3)
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", path)
time.sleep(60)
"""


@pytest.fixture
def sd_root() -> Iterator[Path]:
    # short: the notify socket's path must fit AF_UNIX's 108 bytes
    root = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))
    try:
        yield root
    finally:
        for record in (root / "run/standin-systemd").glob("*.json"):
            pid = json.loads(record.read_text()).get("pid")
            if pid:  # a service this test started and did not stop (a failing test)
                with_start = json.loads(record.read_text()).get("start_time")
                if core_start_time(pid) == with_start:
                    os.killpg(pid, 9)
        shutil.rmtree(root)


def core_start_time(pid: int) -> int | None:
    from tests.standins.systemd import _start_time

    return _start_time(pid)


def systemctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = root / "systemctl"
    if not tool.exists():
        systemctl_zipapp(tool)
    env = {"STANDIN_SYSTEMD_ROOT": str(root), "PATH": "/usr/bin:/bin", "CALLER_SECRET": "x"}
    return subprocess.run([str(tool), *args], capture_output=True, text=True, env=env, timeout=60)


def write_unit(root: Path, name: str, mode: str, *, kind: str = "notify") -> Path:
    script = root / "svc.py"
    script.write_text(SERVICE)
    unit = root / f"etc/systemd/system/{name}.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(
        f"[Unit]\nDescription=demo\n\n[Install]\nWantedBy=multi-user.target\n\n[Service]\nType={kind}\n"
        f'Environment="A=1" B=two\nEnvironmentFile=-/etc/default/%N\nEnvironmentFile=-/etc/none\n'
        f"ExecStart=/usr/bin/python3 {script} \\\n    {root}/env-{name}.json {mode}\n"
    )
    return unit


def test_systemctl_runs_a_notify_service_with_its_own_env(sd_root: Path) -> None:
    write_unit(sd_root, "demo", "ok")
    (sd_root / "etc/default").mkdir(parents=True)
    (sd_root / "etc/default/demo").write_text("# comment\nB='from file'\nC=3\n")
    assert systemctl(sd_root, "is-enabled", "demo").returncode == 1
    enable = systemctl(sd_root, "enable", "/etc/systemd/system/demo.service")
    assert enable.returncode == 0 and "Created symlink" in enable.stderr
    assert (sd_root / "etc/systemd/system/multi-user.target.wants/demo.service").is_symlink()
    assert systemctl(sd_root, "daemon-reload").returncode == 0
    assert systemctl(sd_root, "start", "demo").returncode == 0
    assert systemctl(sd_root, "is-active", "demo").stdout == "active\n"
    env = json.loads((sd_root / "env-demo.json").read_text())
    # systemd's clean environment: the unit's Environment, then its EnvironmentFile; not the caller's
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A": "1",
                   "B": "from file", "C": "3"}  # fmt: skip
    status = systemctl(sd_root, "status", "demo")
    assert status.returncode == 0 and "Active: active (running)" in status.stdout
    pid = json.loads((sd_root / "run/standin-systemd/demo.service.json").read_text())["pid"]
    assert systemctl(sd_root, "stop", "demo").returncode == 0
    assert core_start_time(pid) is None
    assert systemctl(sd_root, "is-active", "demo").stdout == "inactive\n"
    assert systemctl(sd_root, "is-active", "demo").returncode == 3
    assert systemctl(sd_root, "disable", "--now", "demo").returncode == 0
    assert systemctl(sd_root, "is-enabled", "demo").stdout == "disabled\n"


def test_systemctl_uses_the_unit_as_loaded_until_daemon_reload(sd_root: Path) -> None:
    write_unit(sd_root, "demo", "ok")
    assert systemctl(sd_root, "start", "demo").returncode == 0
    systemctl(sd_root, "stop", "demo")
    write_unit(sd_root, "demo", "fail")  # changed on disk, not reloaded
    started = systemctl(sd_root, "restart", "demo")
    assert started.returncode == 0 and "changed on disk. Run 'systemctl daemon-reload'" in started.stderr
    systemctl(sd_root, "stop", "demo")
    systemctl(sd_root, "daemon-reload")
    failed = systemctl(sd_root, "start", "demo")
    assert failed.returncode == 1 and "Job for demo.service failed" in failed.stderr
    assert systemctl(sd_root, "is-active", "demo").stdout == "failed\n"
    assert systemctl(sd_root, "reset-failed", "demo").returncode == 0
    assert systemctl(sd_root, "is-active", "demo").stdout == "inactive\n"


def test_systemctl_refuses_what_it_does_not_know(sd_root: Path) -> None:
    missing = systemctl(sd_root, "start", "nothing")
    assert missing.returncode == 5 and "Unit nothing.service not found" in missing.stderr
    bad = systemctl(sd_root, "start", "--user", "demo")
    assert bad.returncode == 1 and "unrecognized option '--user'" in bad.stderr
    assert systemctl(sd_root, "frobnicate", "demo").returncode == 1
    write_unit(sd_root, "odd", "ok", kind="forking")
    odd = systemctl(sd_root, "start", "odd")
    assert odd.returncode == 1 and "Type=forking is not supported" in odd.stderr


def test_systemctl_merges_drop_ins_in_name_order_and_expands_variables(sd_root: Path) -> None:
    write_unit(sd_root, "demo", "fail")
    script, dropins = sd_root / "svc.py", sd_root / "etc/systemd/system/demo.service.d"
    dropins.mkdir()
    # 10- then 30-: the later MODE wins; 30- replaces the unit's ExecStart (empty one first)
    (dropins / "30-exec.conf").write_text(
        '[Service]\nEnvironment="MODE=ok \\"two words\\""\nExecStartPre=-/nonexistent/modprobe overlay\n'
        f"ExecStart=\nExecStart=/usr/bin/python3 {script} ${{DIR}}/env-demo.json $MODE $$HOME ${{NONE}} $NONE\n"
    )
    (dropins / "10-env.conf").write_text(f"[Service]\nEnvironment=MODE=fail DIR={sd_root}\n")
    (dropins / "20-notes.txt").write_text("[Service]\nExecStart=/not/a/drop-in\n")  # not *.conf
    assert systemctl(sd_root, "start", "demo").returncode == 0
    argv = json.loads((sd_root / "env-demo.json.argv").read_text())
    assert argv == [f"{sd_root}/env-demo.json", "ok", "two words", "$HOME", ""]
    log = (sd_root / "run/standin-systemd/demo.service.log").read_text()
    assert "Executable /nonexistent/modprobe missing, skipping: No such file or directory" in log
    status = systemctl(sd_root, "status", "demo").stdout
    assert "Drop-In: /etc/systemd/system/demo.service.d\n             └─10-env.conf, 30-exec.conf" in status
    systemctl(sd_root, "stop", "demo")
    # a new drop-in counts as a change on disk; the loaded unit stays in use until daemon-reload
    (dropins / "40-more.conf").write_text(f"[Service]\nExecStart=/usr/bin/python3 {script} x fail\n")
    started = systemctl(sd_root, "start", "demo")
    assert started.returncode == 0 and "or drop-ins of demo.service changed on disk" in started.stderr
    systemctl(sd_root, "stop", "demo")
    assert systemctl(sd_root, "daemon-reload").returncode == 0
    two = systemctl(sd_root, "start", "demo")  # 40- adds a second ExecStart=: systemd refuses
    assert two.returncode == 1 and "more than one ExecStart= setting" in two.stderr
    (dropins / "40-more.conf").unlink()
    assert "changed on disk" in systemctl(sd_root, "start", "demo").stderr


def test_systemctl_minus_prefix_ignores_failures_and_missing_executables(sd_root: Path) -> None:
    units = sd_root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "gone.service").write_text("[Service]\nExecStart=-/nonexistent/daemon --flag\n")
    (units / "soft.service").write_text("[Service]\nExecStartPre=-/bin/false\nExecStart=-/bin/false\n")
    (units / "hard.service").write_text("[Service]\nExecStartPre=/nonexistent/setup\nExecStart=/bin/true\n")
    for name in ("gone", "soft"):  # started, ended, not failed
        assert systemctl(sd_root, "start", name).returncode == 0
        assert systemctl(sd_root, "is-active", name).stdout == "inactive\n"
    hard = systemctl(sd_root, "start", "hard")
    assert hard.returncode == 1 and "Job for hard.service failed" in hard.stderr
    assert systemctl(sd_root, "is-active", "hard").stdout == "failed\n"
    log = (sd_root / "run/standin-systemd/hard.service.log").read_text()
    assert "Failed at step EXEC spawning /nonexistent/setup: No such file or directory" in log


ENV = {"ONE": "one", "TWO": "two two", "QUOTED": "'two two' too", "EMPTY": ""}


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # the examples of systemd.service(5) "Command lines"
        (["$ONE", "$TWO", "${TWO}"], ["one", "two", "two", "two two"]),
        (["${QUOTED}", "${EMPTY}", "$QUOTED", "$EMPTY"], ["'two two' too", "", "two two", "too"]),
        (["--a=${ONE}-${UNSET}x", "$UNSET", "${UNSET}"], ["--a=one-x", ""]),
        (["$$", "$${ONE}", "a$$b", "--a=$ONE", "${ONE"], ["$", "${ONE}", "a$b", "--a=$ONE", "${ONE"]),
    ],
)
def test_expand_argv_follows_systemd(words: list[str], expected: list[str]) -> None:
    assert systemd.expand_argv(words, ENV) == expected


@pytest.mark.parametrize(("word", "message"), [("$ONE-x", "named 'ONE-x'"), ("${ONE:-x}", "only ${NAME}")])
def test_expand_argv_refuses_what_systemd_reads_otherwise(
    word: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        systemd.expand_argv([word], ENV)
    assert message in capsys.readouterr().err


def test_a_drop_in_is_read_on_its_own_and_cited_by_path(capsys: pytest.CaptureFixture[str]) -> None:
    main = ("/etc/systemd/system/x.service", "[Service]\nExecStart=/bin/a\nEnvironment=A=1\n")
    reset = ("/etc/systemd/system/x.service.d/a.conf", "[Service]\nEnvironment=\nExecStart=\nExecStart=/b\n")
    unit = systemd.Unit.parse("x.service", [main, reset])
    assert unit.environment() == {"PATH": systemd.SERVICE_PATH}
    (setting,) = unit.settings("Service", "ExecStart")
    assert setting.origin == "/etc/systemd/system/x.service.d/a.conf:4"
    with pytest.raises(SystemExit):  # no section header: not the last section of the unit file
        systemd.Unit.parse(
            "x.service", [main, ("/etc/systemd/system/x.service.d/b.conf", "Environment=B=2\n")]
        )
    assert "x.service.d/b.conf:1: not a key=value line in a section" in capsys.readouterr().err
