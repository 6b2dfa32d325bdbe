"""The fan-out plan (`FanoutPlan`: who gets the layers from whom) and the shell fan-out delivery
runs on hosts (fanout.py), every command text in one place, so
that `deliver_hosts` and the dry-run read the same: the seeds' publish of their kept blobs into
the registry storage, a standing registry host's answer to which layers it serves, and a
fetcher's download of the blobs it gets from one source, each checked against its digest
before anything unpacks it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from builder.runtime import _delivery_shell as sh

NO_FETCH_TOOL = 99  # exit status of a fetch on a host with neither curl nor wget
_STALL_S = 15  # a source sending under 1 KiB/s for this long is given up for the next one


@dataclass(frozen=True, slots=True)
class FanoutPlan:
    """Who gets the layers from whom. `seeds`: the controller sends them every layer; they
    serve it. `fetchers`: every other target host. `storage`: the seeds' registry storage
    root; `ca_pem` None: the registry is plain HTTP (`insecure`); `basic_auth`: base64 of
    USER:PASSWORD, None without auth (kept out of repr: it is a secret)."""

    seeds: tuple[str, ...]
    fetchers: tuple[str, ...]
    port: int
    repository: str
    storage: str
    ca_pem: str | None
    basic_auth: str | None = None
    # `--distribution fanout` asked for (a fetcher without curl or wget is refused by the check
    # then); with auto such a host gets its layers from this machine.
    forced: bool = False
    # Registry hosts this action does not deliver to (a join of nodes): they serve what an
    # earlier fan-out published there, which `deliver_hosts` asks them first.
    standing: tuple[str, ...] = ()
    # log(N) waves (docs/delivery.md): a fetcher of `wave_hosts` that finished serves the
    # fetchers still waiting from a temporary registry, each server `wave_width` fetchers at
    # once (0: one wave, the seeds serve everyone); TLS with `wave_cert`/`wave_key` (issued
    # from the cluster CA for the wave hosts; "" with an insecure registry).
    wave_hosts: tuple[str, ...] = ()
    wave_width: int = 0
    wave_cert: str = ""
    wave_key: str = ""
    wave_htpasswd: str = ""  # the cluster registry's htpasswd line ("": no auth)

    def __repr__(self) -> str:
        return (
            f"FanoutPlan(seeds={self.seeds}, fetchers={self.fetchers}, standing={self.standing}, "
            f"wave_hosts={self.wave_hosts}, wave_width={self.wave_width})"
        )

    @property
    def servers(self) -> tuple[str, ...]:
        return self.seeds + self.standing

    def sources(self, host: str, layer: int) -> tuple[str, ...]:
        """The registry hosts `host` asks for its `layer`-th layer, in order: round-robin over
        the fetchers and layers, then the other servers in turn."""
        servers = self.servers
        first = (self.fetchers.index(host) + layer) % len(servers) if host in self.fetchers else 0
        return servers[first:] + servers[:first]

    def url(self, seed: str, hex_: str) -> str:
        scheme = "https" if self.ca_pem is not None else "http"
        address = f"[{seed}]" if ":" in seed else seed
        return f"{scheme}://{address}:{self.port}/v2/{self.repository}/blobs/sha256:{hex_}"


def publish_command(p: sh.Paths, plan: FanoutPlan, hexes: Sequence[str], storage: str = "") -> str:
    """On a seed: each kept blob hardlinked into the registry storage (`storage`, default the
    cluster registry's; copied across file systems; distribution never writes a blob's data
    again) with its layer link in the repository, each written under a temp name first. A blob
    the seed lacks is skipped (its fetchers then ask another seed or the controller)."""
    v2 = f"{storage or plan.storage}/docker/registry/v2"
    layers = f"{v2}/repositories/{plan.repository}/_layers/sha256"
    return (
        f"set -e; umask 077; for h in {' '.join(hexes)}; do b={shlex.quote(p.blobs)}/$h; "
        '[ -f "$b" ] || continue; '
        f'd={shlex.quote(v2)}/blobs/sha256/$(printf %.2s "$h")/$h; l={shlex.quote(layers)}/$h; '
        'mkdir -p "$d" "$l"; if [ ! -f "$d/data" ]; then rm -f "$d/data.tmp"; '
        'ln "$b" "$d/data.tmp" 2>/dev/null || cp "$b" "$d/data.tmp"; mv -f "$d/data.tmp" "$d/data"; fi; '
        'if [ ! -f "$l/link" ]; then printf sha256:%s "$h" > "$l/link.tmp"; mv -f "$l/link.tmp" "$l/link"; fi; '
        "done"
    )


def fetch_command(p: sh.Paths, plan: FanoutPlan, seed: str, blobs: Sequence[tuple[str, int]]) -> str:
    """On a fetcher: the blobs `blobs` (hex, size) from `seed` into blobs/.partial-<hex>, one
    curl for them all (one process, one TLS connection; wget, one a blob, where curl is
    missing), then one sha256 pass over the whole ones; each matching its digest is renamed to
    its digest path, every other is deleted. One line a blob on stdout (`parse_fetch_report`):
    `ok HEX`, `failed HEX` (the source sent no whole blob), `refused HEX SHA256` (it sent
    another blob). A source's trouble is reported, not an exit status: the command fails only
    on the host's own (exit 99 first thing when it has neither curl nor wget). With auth the
    `Authorization` header is the command's stdin, never an argument."""
    urls = [(hex_, size, shlex.quote(plan.url(seed, hex_))) for hex_, size in blobs]
    blob_dir = shlex.quote(p.blobs)
    ca = shlex.quote(f"{p.data}/.fetch-ca.crt")
    curl = f"curl -fsS --connect-timeout 5 --speed-limit 1024 --speed-time {_STALL_S}"
    wget = f"wget -q --tries=1 --timeout={_STALL_S}"
    if plan.ca_pem is not None:
        curl += f" --cacert {ca}"
        wget += f" --ca-certificate={ca}"
    if plan.basic_auth is not None:
        curl += " -H @-"
        wget += ' --config="$T"'
        # the header, read once from stdin, in a wget config file only root can read
        wget_auth = 'T=$(mktemp); { printf "header = "; cat; } > "$T"; '
        wget_done = 'rm -f "$T"; '
    else:
        wget_auth = wget_done = ""
    # a temp name, then rename: another fetch of the same host may be reading the file
    write_ca = (
        f'printf %s "$SEALER_FETCH_CA" > {ca}.$$; mv -f {ca}.$$ {ca}; ' if plan.ca_pem is not None else ""
    )
    outputs = " ".join(f"-o .partial-{hex_} {url}" for hex_, _, url in urls)
    wgets = "".join(f"{wget} -O .partial-{hex_} {url} || :; " for hex_, _, url in urls)
    checks = "".join(
        f'n=$(wc -c < .partial-{hex_} 2>/dev/null || echo 0); if [ "$n" -eq {size} ]; then '
        f'whole="$whole .partial-{hex_}"; else rm -f .partial-{hex_}; echo failed {hex_}; fi; '
        for hex_, size, _ in urls
    )
    return (
        f"set -e; umask 022; mkdir -p {blob_dir} {shlex.quote(p.data)}; cd {blob_dir}; "
        "if ! command -v curl >/dev/null 2>&1 && ! command -v wget >/dev/null 2>&1; then "
        f"echo 'neither curl nor wget on this host' >&2; exit {NO_FETCH_TOOL}; fi; {write_ca}"
        f"rm -f {' '.join(f'.partial-{h}' for h, _, _ in urls)}; "
        f"if command -v curl >/dev/null 2>&1; then {curl} {outputs} || :; "
        f"else {wget_auth}{wgets}{wget_done}fi; whole=; {checks}"
        # openssl's sha256 uses the CPU's SHA extensions; both print "HEX *FILE" or "HEX  FILE"
        'if [ -n "$whole" ]; then if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r $whole; '
        "else sha256sum $whole; fi | while read -r h f; do f=${f#\\*}; want=${f#.partial-}; "
        'if [ "$h" = "$want" ]; then mv -f -- "$f" "$want"; echo ok "$want"; '
        'else rm -f -- "$f"; echo refused "$want" "$h"; fi; done; fi'
    )


def parse_fetch_report(stdout: str) -> dict[str, tuple[str, str]]:
    """`fetch_command`'s report: hex -> (ok | failed | refused, what arrived for refused)."""
    out: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        hex_, _, arrived = rest.partition(" ")
        if word in ("ok", "failed", "refused") and hex_:
            out[hex_] = (word, arrived)
    return out


def published_command(plan: FanoutPlan, hexes: Sequence[str]) -> str:
    """On a standing registry host: the layers of `hexes` its storage serves (publish_command's
    data file and layer link both there), one hex a line."""
    v2 = f"{plan.storage}/docker/registry/v2"
    layers = f"{v2}/repositories/{plan.repository}/_layers/sha256"
    return (
        f"for h in {' '.join(hexes)}; do "
        f'if [ -f {shlex.quote(layers)}/$h/link ] && [ -f {shlex.quote(v2)}/blobs/sha256/$(printf %.2s "$h")/$h/data ]; '
        'then echo "$h"; fi; done; exit 0'
    )


# --- wave servers -------------------------------------------------------------------------------

NO_REGISTRY_BINARY = 95  # exit status of a wave start on a host with no registry binary (or no curl)
WAVE_NOT_READY = 96  # ... whose registry did not answer in time
WAVE_CERT_ENV = "SEALER_WAVE_CERT"
WAVE_KEY_ENV = "SEALER_WAVE_KEY"  # secret: on stdin (env.secret_stdin), never in a command line
WAVE_HTPASSWD_ENV = "SEALER_WAVE_HTPASSWD"  # secret too
_WAVE_READY_TRIES = 40  # x 0.25 s
_WAVE_LIFETIME_S = 6 * 3600


def wave_dir(p: sh.Paths) -> str:
    """A wave server's own directory: config, TLS, htpasswd, storage (hardlinks of the host's
    verified blobs), log and pid; removed when the wave ends."""
    return f"{p.data}/.wave-registry"


def wave_serve_command(p: sh.Paths, plan: FanoutPlan, hexes: Sequence[str], htpasswd: bool) -> str:
    """On a fetcher that finished: its blobs published in a storage of its own and a registry
    started there on the cluster registry's port, as a process of its own (setsid, pid file),
    serving the same repository with the same credentials and a certificate from the cluster
    CA; the image's bin/registry, else the host's docker-registry, else exit 95. Answers once
    /v2/ does (any HTTP status), else exit 96 with the process stopped."""
    d = shlex.quote(wave_dir(p))
    binary = shlex.quote(f"{p.rootfs}/bin/registry")
    scheme = "https" if plan.wave_cert else "http"
    lines = [
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {wave_dir(p)}/storage",
        "http:",
        f"  addr: :{plan.port}",
    ]
    if plan.wave_cert:
        lines += [
            "  tls:",
            f"    certificate: {wave_dir(p)}/server.crt",
            f"    key: {wave_dir(p)}/server.key",
        ]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: sealer-registry", f"    path: {wave_dir(p)}/htpasswd"]
    config = "version: 0.1\nlog:\n  level: error\n" + "\n".join(lines) + "\n"
    tls = (
        f'printf %s "${WAVE_CERT_ENV}" > {d}/server.crt; printf %s "${WAVE_KEY_ENV}" > {d}/server.key; '
        if plan.wave_cert
        else ""
    )
    auth = f'printf %s "${WAVE_HTPASSWD_ENV}" > {d}/htpasswd; ' if htpasswd else ""
    return (
        f"{wave_stop_command(p)}; set -e; umask 077; "
        f"if [ -x {binary} ]; then bin={binary}; elif bin=$(command -v docker-registry); then :; else "
        f"echo 'no registry binary (the image has no bin/registry, the host no docker-registry)' >&2; "
        f"exit {NO_REGISTRY_BINARY}; fi; command -v curl >/dev/null 2>&1 || "
        f"{{ echo 'no curl to see the registry answer' >&2; exit {NO_REGISTRY_BINARY}; }}; "
        f"mkdir -p {d}/storage; {tls}{auth}printf %s {shlex.quote(config)} > {d}/config.yml; "
        f"( {publish_command(p, plan, hexes, f'{wave_dir(p)}/storage')} ); "
        # bounded: a controller killed mid-delivery never stops it, so it stops itself
        f'setsid timeout {_WAVE_LIFETIME_S} "$bin" serve {d}/config.yml > {d}/log 2>&1 < /dev/null & echo $! > {d}/pid; '
        f"i=0; until [ \"$(curl -sk -o /dev/null -w '%{{http_code}}' {scheme}://127.0.0.1:{plan.port}/v2/)\" != 000 ]; do "
        f"i=$((i+1)); if [ $i -ge {_WAVE_READY_TRIES} ]; then tail -n 3 {d}/log >&2 || :; "
        f"kill \"$(cat {d}/pid)\" 2>/dev/null || :; echo 'the wave registry did not answer' >&2; exit {WAVE_NOT_READY}; fi; "
        "sleep 0.25; done"
    )


def wave_stop_command(p: sh.Paths) -> str:
    """The wave server stopped (its pid file's process, when it is a registry's `serve`, so a
    reused pid is never killed; SIGKILL after 5 s) and its directory removed. Idempotent."""
    d = shlex.quote(wave_dir(p))
    return (
        f"if [ -f {d}/pid ]; then w=$(cat {d}/pid); "
        'if [ -n "$w" ] && grep -qa serve "/proc/$w/cmdline" 2>/dev/null; then kill "$w" 2>/dev/null || :; '
        # a zombie (its parent, init, not yet reaping it) counts as stopped
        'up() { [ -d "/proc/$w" ] && ! grep -q \'^State:[[:space:]]*Z\' "/proc/$w/status" 2>/dev/null; }; '
        "i=0; while up && [ $i -lt 20 ]; do sleep 0.25; i=$((i+1)); done; "
        'if up; then kill -9 "$w" 2>/dev/null || :; fi; fi; fi; '
        f"rm -rf -- {d}"
    )
