"""`make bench` (fan-out part): today's delivery (every host from this machine over SSH) against
fan-out delivery (the seed from this machine, every other host from the seed's registry) to
1, 2, 4, 8 and 16 fixture hosts, with this machine's link limited by tc.

Needs root, like the component tests: the hosts are tests/hosts.py's (network + mount
namespaces, each with its own sshd, on one bridge), made fresh for this run and removed after.
The controller's link: a `tbf` qdisc on the bridge device, i.e. on what this machine sends onto
the bridge (`--rate`, default 100mbit); frames the bridge forwards from host to host leave
through the hosts' veths and are not limited, as in a cluster whose nodes share a fast network
and the operator's laptop sits behind a slower one.

Per host count N, each mode once per round (`--rounds`, default 5: medians and min-max reported, modes alternating), every host's
/var/lib/sealer emptied (and the seed's registry stopped) before each run:
- ssh: `delivery.deliver()` of the image to the N hosts (8 at once, as `sealer run`);
- fanout (N >= 2): host 0 is the cluster's one master, the registry host, so K = 1: the
  controller sends it the layers (`fanout.deliver_hosts`), the registry-seed steps start
  Debian's docker-registry on it over TLS with htpasswd auth (registry-service's own
  commands), then the N-1 others fetch from it (`fanout.deliver_hosts`), as `sealer run
  --distribution fanout` runs deliver, registry-seed and deliver-fetch.
Each is a child of the launcher (wall time, CPU time and peak RSS of the controller child).
Results: bench/results/fanout.{json,md} and fanout.png (time against host count).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._measure import RESULTS, compile_bytecode, facts_line, run_child, run_facts, write_results
from bench.gen_context import generate

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
IMAGE = "bench/fanout:v1"
CLUSTER = "benchfan"
USER, PASSWORD = "bench", "bench-pass"
HOSTS = (1, 2, 4, 8, 16)
MODES = ("ssh", "fanout", "waves")
SCALE = 0.1  # the benchmark context at a tenth: ~30 MB compressed, as the measure


# --- the child: one delivery -----------------------------------------------------------------------


def _cluster(addresses: list[str]) -> Any:
    from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, Role

    hosts = (HostSpec(addresses[0], (Role.MASTER,)), *(HostSpec(a, (Role.NODE,)) for a in addresses[1:]))
    return Cluster(CLUSTER, IMAGE, hosts, registry=RegistrySpec(username=USER, password=PASSWORD))


def child(spec: dict[str, Any]) -> None:
    from builder.image.descriptor import Platform
    from builder.runtime import delivery, fanout, fanout_waves, registry_pki
    from builder.runtime.env import secret_stdin
    from builder.runtime.facts import Facts
    from builder.runtime.infra import SSHCredentials, SSHDriver
    from builder.runtime.phases import ImageInfo, PlanState
    from builder.runtime.phases.deliver_fetch import SeedRegistry
    from builder.runtime.phases.registry_service import storage_dir
    from builder.runtime.plugins import get_plugin
    from builder.store.layout import Store

    store = Store.open(spec["store"], create=False)
    plat = Platform.parse(spec["platform"])
    image = delivery.prepare_image(store, IMAGE, plat)
    creds = SSHCredentials(
        user="root", key_files=(spec["key"],), known_hosts=spec["known_hosts"], use_agent=False
    )
    addresses: list[str] = spec["hosts"]
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {"start": _group_cpu_s()}

    async def go() -> dict[str, Any]:
        async with SSHDriver(creds) as driver:
            if spec["mode"] == "ssh":
                results = await delivery.deliver(driver, store, image, CLUSTER, {a: {} for a in addresses})
                return {"sent": {h: r.bytes_sent for h, r in results.items()}, "fetched": {}}
            cluster = _cluster(addresses)
            material = registry_pki.load_or_make(Path(spec["state"]), cluster)
            plan = fanout.choose("fanout", None, cluster, cluster.ips, material, storage_dir(CLUSTER))
            assert plan is not None and material is not None and plan.seeds == (addresses[0],)
            if spec["mode"] == "waves":  # hosts that finished serve the next (the hosts' docker-registry)
                plan = fanout_waves.with_wave_material(plan, Path(spec["state"]), material)
            else:  # one wave: the seed serves every fetcher
                plan = dataclasses.replace(plan, wave_width=0)
            started = time.monotonic()
            seeded = await fanout.deliver_hosts(driver, store, image, CLUSTER, {addresses[0]: {}}, plan)
            phases["deliver"] = time.monotonic() - started
            cpu["deliver"] = _group_cpu_s()
            state = PlanState(
                ImageInfo(IMAGE, None, plat), get_plugin("k3s"), cluster.ips, registry=material, fanout=plan
            )
            for step in SeedRegistry().plan(cluster, Facts(), state):
                secrets = {k: v for k, v in step.env.items() if k in step.secret_env}
                prefix, lines = secret_stdin(secrets)
                env = {k: v for k, v in step.env.items() if k not in secrets}
                await driver.run(step.host, prefix + step.command, env=env, stdin=lines, timeout_s=120)
            phases["registry-seed"] = time.monotonic() - started - phases["deliver"]
            cpu["registry-seed"] = _group_cpu_s()
            fetched = await fanout.deliver_hosts(
                driver, store, image, CLUSTER, {a: {} for a in addresses[1:]}, plan
            )
            phases["deliver-fetch"] = time.monotonic() - started - phases["deliver"] - phases["registry-seed"]
            cpu["deliver-fetch"] = _group_cpu_s()
            both = {**seeded, **fetched}
            return {
                "sent": {h: r.result.bytes_sent for h, r in both.items()},
                "fetched": {h: r.bytes_fetched for h, r in both.items()},
            }

    out = asyncio.run(go())
    marks = list(cpu.values())
    phases_cpu = {k: round(b - a, 2) for k, a, b in zip(list(cpu)[1:], marks, marks[1:], strict=False)}
    print(
        json.dumps({**out, "phases": {k: round(v, 3) for k, v in phases.items()}, "phases_cpu": phases_cpu})
    )


# --- CPU of every process of the run: this machine's 2 cores run the hosts too --------------------

_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def _own_group() -> Path | None:
    """The cgroup (v1 cpuacct) this process is in, when it is one `_cpu_group` made."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(",") and path.startswith("/sealer-bench-"):
            return _CPUACCT / path.lstrip("/")
    return None


def _group_cpu_s() -> float:
    """CPU seconds used so far by every process in this run's cgroup (the hosts' sshd, curl,
    tar, zstd, registry, and this child); 0 without one."""
    group = _own_group()
    return int((group / "cpuacct.usage").read_text()) / 1e9 if group is not None else 0.0


class _CpuGroup:
    """A cpuacct cgroup the benchmark joins before it starts the hosts, so that every process
    they start is counted per phase (`phases_cpu`); nothing where cgroup v1's cpuacct is absent."""

    def __init__(self) -> None:
        self.path = _CPUACCT / f"sealer-bench-{os.getpid()}"

    def join(self) -> None:
        if _CPUACCT.is_dir():
            self.path.mkdir(exist_ok=True)
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def leave(self) -> None:
        if self.path.is_dir():
            (_CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
            with contextlib.suppress(OSError):  # a process of the run still in it (a leftover daemon)
                self.path.rmdir()


# --- the parent ------------------------------------------------------------------------------------


def _built(store_root: Path, ctx: Path) -> None:
    """The benchmark image in its own store, built once by the sealer CLI."""
    from builder.errors import ImageNotFound
    from builder.store.layout import Store

    if store_root.exists():
        store = Store.open(store_root, create=False)
        try:
            store.resolve(IMAGE)
            return
        except ImageNotFound:
            pass
        finally:
            store.close()
    argv = [
        sys.executable,
        "-m",
        "builder.cli",
        "--root",
        str(store_root),
        "build",
        "-q",
        "-t",
        IMAGE,
        str(ctx),
    ]
    subprocess.run(argv, check=True)


def _tc(bridge: str, rate: str | None) -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", bridge, "root"], capture_output=True, check=False)
    if rate:
        subprocess.run(
            [
                "tc",
                "qdisc",
                "add",
                "dev",
                bridge,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "256kb",
                "latency",
                "100ms",
            ],
            check=True,
        )


def _plot(points: dict[str, dict[int, float]], rate: str, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, by_n in points.items():
        ns = sorted(by_n)
        ax.plot(ns, [by_n[n] for n in ns], marker="o", label=mode)
    ax.set_xscale("log", base=2)
    counts = sorted({n for by_n in points.values() for n in by_n})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("hosts")
    ax.set_ylabel("delivery wall time, s")
    ax.set_title(f"Delivery time against host count (controller link {rate})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.run_fanout", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rate", default="100mbit", help="tc tbf rate of the controller's link ('' for none)"
    )
    parser.add_argument("--hosts", default=",".join(map(str, HOSTS)), help="host counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians and ranges)")
    parser.add_argument("--modes", default=",".join(MODES), help="of ssh, fanout, waves; comma-separated")
    parser.add_argument("--scale", type=float, default=SCALE, help="of the benchmark context (gen_context)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results")
    args = parser.parse_args(argv)
    counts = sorted({int(x) for x in args.hosts.split(",")})
    compile_bytecode()
    if os.geteuid() != 0:
        raise SystemExit("the fan-out benchmark needs root (it makes network namespaces, sshd hosts and tc)")
    sys.path.insert(0, str(HERE.parent))
    from builder.image.descriptor import Platform
    from builder.runtime import registry_pki
    from builder.runtime.delivery import prepare_image
    from builder.runtime.phases.registry_service import unit_name
    from builder.store.layout import Store
    from tests.hosts import HostLab

    store_root = WORK / f"fanout-store-{args.scale}"
    _built(store_root, generate(WORK / f"fanout-context-{args.scale}", scale=args.scale))
    store = Store.open(store_root, create=False)
    plat = Platform.host()
    image = prepare_image(store, IMAGE, plat)
    blob_bytes = sum(layer.descriptor.size for layer in image.layers)
    store.close()
    base_dir = WORK / "fanout-hosts"
    state_dir = WORK / "fanout-state"
    shutil.rmtree(base_dir, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    base_dir.mkdir(parents=True)
    state_dir.mkdir(parents=True)
    cpu_group = _CpuGroup()
    cpu_group.join()
    lab = HostLab.open(base_dir)
    runs: list[dict[str, Any]] = []
    try:
        hosts = lab.make_hosts(max(counts))
        registry_pki.load_or_make(state_dir, _cluster(hosts.addresses))  # the CA and the server certificate
        _tc(lab.bridge, args.rate)

        def fresh() -> None:
            hosts[0].run(f"systemctl stop {unit_name(CLUSTER)} || true")
            for h in hosts:
                for d in h.path("/var/lib/sealer").iterdir():
                    shutil.rmtree(d) if d.is_dir() and not d.is_symlink() else d.unlink()
            subprocess.run(["sync"], check=True)
            time.sleep(1)

        for r in range(args.rounds):
            for n in counts:
                # 1 host is every ratio's baseline: over SSH whatever --modes says
                modes = ["ssh"] if n == 1 else [m for m in MODES if m in args.modes.split(",")]
                for mode in modes if r % 2 == 0 else modes[::-1]:
                    spec = {
                        "store": str(store_root),
                        "state": str(state_dir),
                        "platform": str(plat),
                        "key": str(hosts.client_key),
                        "known_hosts": str(hosts.known_hosts),
                        "hosts": hosts.addresses[:n],
                        "mode": mode,
                    }
                    fresh()
                    run = run_child([sys.executable, "-m", "bench.run_fanout", "--child", json.dumps(spec)])
                    out = json.loads(run.stdout)
                    row = {
                        "round": r,
                        "hosts": n,
                        "mode": mode,
                        "wall_s": round(run.wall_s, 2),
                        "cpu_s": round(run.cpu_s, 2),
                        "peak_rss_mb": round(run.peak_rss_mb, 1),
                        "controller_bytes": sum(out["sent"].values()),
                        "fetched_bytes": sum(out["fetched"].values()),
                        "phases": out.get("phases", {}),
                        "phases_cpu": out.get("phases_cpu", {}),
                    }
                    runs.append(row)
                    print(json.dumps(row), flush=True)
        fresh()
    finally:
        _tc(lab.bridge, None)
        lab.close()
        cpu_group.leave()
        shutil.rmtree(base_dir, ignore_errors=True)
    return _report(runs, counts, blob_bytes, len(image.layers), args)


def _report(
    runs: list[dict[str, Any]], counts: list[int], blob_bytes: int, layers: int, args: Any
) -> dict[str, Any]:
    import statistics

    def values(mode: str, n: int, key: str) -> list[float]:
        return [r[key] for r in runs if r["mode"] == mode and r["hosts"] == n]

    def median(mode: str, n: int, key: str) -> float | None:
        xs = values(mode, n, key)
        return statistics.median(xs) if xs else None

    def spread(mode: str, n: int) -> str:
        xs = values(mode, n, "wall_s")
        return f"{min(xs):.1f}-{max(xs):.1f}" if xs else "-"

    def phase_medians(n: int, key: str) -> str:
        found = [r[key] for r in runs if r["mode"] == "fanout" and r["hosts"] == n and r.get(key)]
        if not found:
            return "-"
        return " / ".join(f"{statistics.median(f[k] for f in found):.1f}" for k in found[0])

    one = median("ssh", 1, "wall_s") or float("nan")  # --hosts without 1: no ratios
    points: dict[str, dict[int, float]] = {
        "ssh (today)": {},
        "fanout (K=1)": {},
        "waves (K=1, 2 a server)": {},
    }
    rows = []
    for n in counts:
        ssh, fan, wav = (median(m, n, "wall_s") for m in MODES)
        for label, v in zip(points, (ssh, fan, wav), strict=True):
            if v is not None:
                points[label][n] = v
        fan_bytes = median("fanout", n, "controller_bytes")
        rows.append(
            f"| {n} | "
            + (f"{ssh:.1f} | {spread('ssh', n)} | {ssh / one:.1f}x | " if ssh is not None else "- | - | - | ")
            + (
                f"{fan:.1f} | {spread('fanout', n)} | {fan / one:.2f}x | {(fan_bytes or 0) / blob_bytes:.2f}x | "
                if fan is not None
                else "- | - | - | - | "
            )
            + (
                f"{wav:.1f} | {spread('waves', n)} | {wav / one:.2f}x | "
                if wav is not None
                else "- | - | - | "
            )
            + f"{phase_medians(n, 'phases')} | {phase_medians(n, 'phases_cpu')} |"
        )
    ratios = {
        f"{m}_{n}_x_1": round(v / one, 2)
        for m in ("fanout", "waves")
        for n in (8, 16)
        if (v := median(m, n, "wall_s")) is not None
    }
    if (b16 := median("fanout", 16, "controller_bytes")) is not None:
        ratios["fanout_16_bytes_x_image"] = round(b16 / blob_bytes, 2)
    facts = run_facts(args.rounds)
    report = {
        **facts,
        "rate": args.rate,
        "image": {"name": IMAGE, "layers": layers, "blob_bytes": blob_bytes, "scale": args.scale},
        "runs": runs,
        "targets": {"fanout_8_x_1": 2.0, "fanout_16_x_1": 2.5, "fanout_16_bytes_x_image": 3.0},
        "checks": ratios,
    }
    lines = [
        f"Image {IMAGE}: {layers} layers, {blob_bytes / 1e6:.1f} MB compressed; controller link {args.rate} "
        f"(tc tbf on the hosts' bridge), hosts' links not limited; {facts_line(facts)} (the CPUs shared with "
        "every host: sshd, zstd, tar and the registry all run here)",
        "",
        "| hosts | ssh s (median) | ssh min-max | ssh x 1 host | fanout s (median) | fanout min-max "
        "| fanout x 1 host | fanout bytes from controller x image | waves s (median) | waves min-max "
        "| waves x 1 host | fanout deliver / registry-seed / deliver-fetch s | CPU s of every process, same phases |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Targets (issue 15), on medians: fanout 8 hosts <= 2x and 16 hosts <= 2.5x the 1-host time; bytes "
        "leaving the controller for 16 hosts <= 3x the image. Measured: "
        + ", ".join(f"{k} {v}" for k, v in ratios.items()),
    ]
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        if _plot(points, args.rate, RESULTS / "fanout.png"):
            lines.append("")
            lines.append("![delivery time against host count](fanout.png)")
        write_results("fanout", report, lines)
    else:
        print("\n".join(lines))
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
