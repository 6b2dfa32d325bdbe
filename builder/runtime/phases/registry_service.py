"""registry-service: the cluster's local registry (distribution) as a systemd unit on every
registry host (`Cluster.registry_hosts`: every master with `ha`, else master0), after
host-scripts, so the cluster runtime's first pull finds it. Not for the `none` runtime: no
container runtime pulls from it. An image without a `registry/` tree gets it all the same, with
an empty storage (sealer always deploys it; an app image's images are added to it later).

On a registry host, ROOT the sealer root (/var/lib/sealer), C the cluster:

    ROOT/data/C/registry/            0700: everything of the service (gone with the rootfs too)
        config.yml                   distribution's config (TLS unless insecure, htpasswd with a user)
        tls/ca.crt tls/server.crt tls/server.key     (the key 0600)
        auth/htpasswd                (0600, with a username only)
        storage/                     the storage's rootdirectory (docker/registry/v2/...)
    /etc/systemd/system/sealer-registry-C.service    Restart=always, enabled

Two steps per host, never journaled (each rewrites only what changed, so a re-run with new
credentials or a reissued certificate takes them):

    registry-config  the files, written only when they differ; the delivered rootfs `registry/`
                     merged into the storage (only what it lacks: blob data hardlinked, the small
                     link files copied, the delivered tree never modified); the unit running the
                     image's `bin/registry`, else the host's `docker-registry`; `enable --now`,
                     and a restart only when a file of the service changed
    registry-ready   /v2/ answers on this host, over TLS verified with the CA (with auth: 401
                     without credentials, 200 with them)

Secrets (the server key, the htpasswd, the password for the check) reach the host only in the
step's env, named in `secret_env`. Hosts in scope: the action's targets that serve the
registry, and every registry host when this action made a new server certificate or htpasswd
(`RegistryMaterial.changed`: a master joined with `ha`, new credentials, a renewal).
"""

from __future__ import annotations

import base64
import shlex
from typing import ClassVar

from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.delivery import DEFAULT_ROOT
from builder.runtime.facts import Facts
from builder.runtime.phases.base import Phase, PlanState, Step
from builder.runtime.plugins.none import NoneRuntime
from builder.runtime.registry_pki import RegistryMaterial

CA_ENV = "SEALER_REGISTRY_CA"
CERT_ENV = "SEALER_REGISTRY_CERT"
KEY_ENV = "SEALER_REGISTRY_KEY"
HTPASSWD_ENV = "SEALER_REGISTRY_HTPASSWD"
BASIC_AUTH_ENV = "SEALER_REGISTRY_BASIC_AUTH"  # base64 of USER:PASSWORD, for the /v2/ check
REGISTRY_BINARY = "bin/registry"  # distribution's registry when the image ships it (rootfs path)
REGISTRY_TOOL = "docker-registry"  # else the host's (Debian's package)
READY_TIMEOUT_S = 60
_CONFIG_TIMEOUT_S = 1800  # the merge of a large registry/ tree copies its link files


def registry_dir(cluster: str, root: str = DEFAULT_ROOT, data_root: str = "") -> str:
    """Everything of the registry service on a registry host: in the cluster's data dir, under
    its spec.dataRoot (`data_root`) when it has one (as sealer's DataDir, rootfs/../registry)."""
    return f"{data_root or root + '/data'}/{cluster}/registry"


def storage_dir(cluster: str, root: str = DEFAULT_ROOT, data_root: str = "") -> str:
    """distribution's storage rootdirectory: blobs merged here are served without a restart."""
    return f"{registry_dir(cluster, root, data_root)}/storage"


def unit_name(cluster: str) -> str:
    return f"sealer-registry-{cluster}.service"


def unit_path(cluster: str) -> str:
    return f"/etc/systemd/system/{unit_name(cluster)}"


def merge_tree_command(src: str, dst: str, *, move_tags: bool = False) -> str:
    """Shell: what `dst` (a distribution storage) lacks of `src` (a registry/ tree in the same
    layout), without touching `src`. Blob `data` files are content-addressed and never written
    again (a new blob is renamed into place), so they are hardlinked (copied across file
    systems); every other file is copied, because distribution rewrites link files in place and
    a hardlink would carry that write into `src`. A file `dst` has is kept, except, with
    `move_tags`, a tag's `current/link` (an app's new version moves its tags). Copies go to a
    temp name first, so the registry never reads half a file. Nothing to do without `src`."""
    s, d = shlex.quote(src), shlex.quote(dst)
    tags = "1" if move_tags else ""
    return (
        f"if [ -d {s} ]; then mkdir -p {d} && cd {s} && "
        f'find . -type d -exec sh -c \'cd "$0" && mkdir -p "$@"\' {d} {{}} + && '
        f"find . -type f -exec sh -c '{_MERGE_FILES}' {d} {shlex.quote(tags)} {{}} +; fi"
    )


# "$0": dst; "$1": move tags ("" or "1"); then the files, relative to src (the cwd).
_MERGE_FILES = (
    'dst=$0 tags=$1; shift; for f; do t="$dst/$f"; '
    'case "$f" in */_manifests/tags/*/current/link) [ -n "$tags" ] && ! cmp -s "$f" "$t" || '
    '[ ! -e "$t" ] || continue;; *) [ -e "$t" ] && continue;; esac; '
    'case "$f" in */blobs/sha256/*/data) ln "$f" "$t" 2>/dev/null && continue;; esac; '
    'cp "$f" "$t.sealer-tmp" && mv -f "$t.sealer-tmp" "$t" || exit 1; done'
)


def _config_yml(cluster: Cluster, directory: str, material: RegistryMaterial) -> str:
    spec = cluster.registry
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {directory}/storage",
        # No `cache: blobdescriptor`: an in-memory cache would answer "unknown blob" for blobs
        # merged into the storage after start (app images); without one each stat hits the disk.
        "http:",
        f"  addr: :{spec.port}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if material.has_tls:
        lines += [
            "  tls:",
            f"    certificate: {directory}/tls/server.crt",
            f"    key: {directory}/tls/server.key",
        ]
    if material.htpasswd is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: sealer-registry",
            f"    path: {directory}/auth/htpasswd",
        ]
    return "\n".join(lines) + "\n"


def _unit_text(cluster: Cluster, directory: str) -> str:
    """The unit, with BIN replaced on the host by the registry binary found there."""
    return (
        "[Unit]\n"
        f"Description=sealer cluster registry of cluster {cluster.name} (distribution)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart=@BIN@ serve {directory}/config.yml\n"
        "Restart=always\n"
        "RestartSec=1\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


# put PATH MODE CONTENT: written (temp file, then rename) only when it differs, `changed=1` then.
# A function, not a pipeline: a pipeline's last command runs in a subshell in dash, where
# `changed` would be lost; and printf is a builtin, so no secret shows in a process's arguments.
_PUT = (
    'put() { t="$1.sealer-new"; printf %s "$3" > "$t" && chmod "$2" "$t" || return 1; '
    'if cmp -s "$t" "$1"; then rm -f "$t"; else mv -f "$t" "$1" && changed=1; fi; }'
)


def config_command(cluster: Cluster, material: RegistryMaterial, rootfs: str, root: str) -> str:
    """Shell for registry-config (see the module docstring)."""
    directory = registry_dir(cluster.name, root, cluster.data_root)
    q = shlex.quote(directory)
    unit = unit_name(cluster.name)
    bin_in_image = shlex.quote(f"{rootfs}/{REGISTRY_BINARY}")
    parts = [
        "set -e; umask 077; changed=",
        _PUT,
        f"if [ -x {bin_in_image} ]; then bin={bin_in_image}; "
        f"elif bin=$(command -v {REGISTRY_TOOL}); then :; else "
        f"echo 'no registry binary: the image has no bin/registry and this host no docker-registry "
        "(apt-get install docker-registry, or ship distribution as bin/registry)' >&2; exit 1; fi",
        f"mkdir -p {q}/tls {q}/auth {q}/storage /etc/systemd/system && chmod 700 {q}",
        f"put {q}/config.yml 600 {shlex.quote(_config_yml(cluster, directory, material))}",
    ]
    if material.has_tls:
        parts += [
            f'put {q}/tls/ca.crt 644 "${CA_ENV}"',
            f'put {q}/tls/server.crt 644 "${CERT_ENV}"',
            f'put {q}/tls/server.key 600 "${KEY_ENV}"',
        ]
    else:
        parts.append(f"rm -f {q}/tls/ca.crt {q}/tls/server.crt {q}/tls/server.key")
    if material.htpasswd is not None:
        parts.append(f'put {q}/auth/htpasswd 600 "${HTPASSWD_ENV}"')
    else:
        parts.append(f"if [ -e {q}/auth/htpasswd ]; then rm -f {q}/auth/htpasswd; changed=1; fi")
    before, after = _unit_text(cluster, directory).split("@BIN@")
    parts += [
        f"( {merge_tree_command(f'{rootfs}/registry', f'{directory}/storage')} )",
        f'put {shlex.quote(unit_path(cluster.name))} 644 {shlex.quote(before)}"$bin"{shlex.quote(after)}',
        "systemctl daemon-reload",
        f'if [ -n "$changed" ]; then systemctl enable {unit} && systemctl restart {unit} && '
        f'echo "{unit}: (re)started with its new files"; '
        f'else systemctl enable --now {unit} && echo "{unit}: unchanged, running"; fi',
    ]
    return "; ".join(parts)


def ready_command(cluster: Cluster, material: RegistryMaterial, root: str) -> str:
    """Shell for registry-ready: /v2/ on this host answers as configured, within READY_TIMEOUT_S."""
    spec = cluster.registry
    scheme = "https" if material.has_tls else "http"
    url = f"{scheme}://{spec.domain}:{spec.port}/v2/"
    ca = f"{registry_dir(cluster.name, root, cluster.data_root)}/tls/ca.crt"
    curl = f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --resolve {spec.domain}:{spec.port}:127.0.0.1"
    if material.has_tls:
        curl += f" --cacert {shlex.quote(ca)}"
    if material.htpasswd is not None:
        # the credentials go to curl as a header on its stdin (-H @-), never on a command line,
        # and as base64, so that no character of the password needs quoting
        with_auth = f"printf 'Authorization: Basic %s\\n' \"${BASIC_AUTH_ENV}\" | {curl} -H @- {url}"
        check = f'[ "$({curl} {url} 2>/dev/null)" = 401 ] && [ "$({with_auth} 2>/dev/null)" = 200 ]'
        expect = "401 without credentials, 200 with them"
    else:
        check = f'[ "$({curl} {url} 2>/dev/null)" = 200 ]'
        expect = "200"
    unit = unit_name(cluster.name)
    return (
        "command -v curl >/dev/null 2>&1 || "
        f"{{ echo 'no curl on this host: {url} not checked'; exit 0; }}; "
        f"i=0; until {check}; do i=$((i+1)); if [ $i -ge {READY_TIMEOUT_S * 2} ]; then "
        f"echo '{url} did not answer {expect} within {READY_TIMEOUT_S}s' >&2; "
        f"systemctl status {unit} >&2 || true; exit 1; fi; sleep 0.5; done; echo '{url}: {expect}'"
    )


def _env(cluster: Cluster, material: RegistryMaterial) -> tuple[dict[str, str], tuple[str, ...]]:
    env: dict[str, str] = {}
    secret: list[str] = []
    if material.has_tls:
        env.update({CA_ENV: material.ca_pem, CERT_ENV: material.cert_pem, KEY_ENV: material.key_pem})
        secret.append(KEY_ENV)
    if material.htpasswd is not None:
        env[HTPASSWD_ENV] = material.htpasswd
        secret.append(HTPASSWD_ENV)
    return env, tuple(secret)


def hosts_in_scope(cluster: Cluster, state: PlanState) -> tuple[HostSpec, ...]:
    """The registry hosts this action works on (module docstring)."""
    material = state.registry
    if material is None or isinstance(state.plugin, NoneRuntime):
        return ()
    targets = set(state.targets)
    return tuple(h for h in cluster.registry_hosts if material.changed or h.ip in targets)


def host_problems(cluster: Cluster, state: PlanState, host: str, tools: frozenset[str]) -> list[str]:
    """What stops `host` from serving the registry, for the check phase to say before any host
    changes: no registry binary (the image's bin/registry, else the host's docker-registry)."""
    if REGISTRY_BINARY in state.image.files or REGISTRY_TOOL in tools:
        return []
    if host not in {h.ip for h in hosts_in_scope(cluster, state)}:
        return []
    return [
        f"no registry binary for the cluster registry: the image has no {REGISTRY_BINARY} and this "
        f"host no {REGISTRY_TOOL} (apt-get install {REGISTRY_TOOL}, or ship distribution's registry "
        f"as {REGISTRY_BINARY})"
    ]


class RegistryService(Phase):
    name: ClassVar[str] = "registry-service"
    title: ClassVar[str] = "Serve the cluster registry"

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        material = state.registry
        if material is None or not hosts_in_scope(cluster, state):
            return []
        spec = cluster.registry
        rootfs = state.rootfs(cluster)
        config = config_command(cluster, material, rootfs, state.root)
        env, secret = _env(cluster, material)
        ready_env: dict[str, str] = {}
        if material.htpasswd is not None:
            credentials = f"{spec.username}:{spec.password}".encode()
            ready_env = {BASIC_AUTH_ENV: base64.b64encode(credentials).decode()}
        how = "TLS" if material.has_tls else "plain HTTP (insecure: no TLS)"
        auth = f", htpasswd auth for {spec.username}" if material.htpasswd is not None else ", no auth"
        steps: list[Step] = []
        for h in hosts_in_scope(cluster, state):
            steps.append(
                Step(
                    host=h.ip,
                    id="registry-config",
                    description=f"{unit_name(cluster.name)} on :{spec.port}, {how}{auth}; "
                    f"{rootfs}/registry into its storage",
                    command=config,
                    env=env,
                    journal=False,
                    timeout_s=_CONFIG_TIMEOUT_S,
                    secret_env=secret,
                )
            )
            steps.append(
                Step(
                    host=h.ip,
                    id="registry-ready",
                    description=f"wait until {spec.endpoint}/v2/ answers on this host",
                    command=ready_command(cluster, material, state.root),
                    env=ready_env,
                    journal=False,
                    timeout_s=READY_TIMEOUT_S + 30,
                    secret_env=(BASIC_AUTH_ENV,) if ready_env else (),
                )
            )
        return steps
