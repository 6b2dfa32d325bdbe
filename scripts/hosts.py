"""`make hosts N=3` / `make hosts-down`: test hosts for a person, as the tests make them.

    python scripts/hosts.py up N [--password-host I]   # I: 1-based host number
    python scripts/hosts.py down

The hosts stay up until `down` (or until a later `up` replaces them). See docs/hosts.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hosts import HostLab, HostSetupError, remove_persistent_labs

BASE_DIR = Path("/var/tmp/sealer-test-hosts")


def up(n: int, password_host: int | None) -> None:
    remove_persistent_labs()
    lab = HostLab.open(BASE_DIR, persistent=True)
    try:
        hosts = lab.make_hosts(n, password_host=None if password_host is None else password_host - 1)
    except BaseException:
        lab.close()
        raise
    config = BASE_DIR / "ssh_config"
    entries = []
    for h in hosts:
        entries.append(
            f"Host {h.hostname} h{h.index}\n  HostName {h.address}\n  User root\n"
            f"  UserKnownHostsFile {hosts.known_hosts}\n  StrictHostKeyChecking yes\n"
            + ("" if h.password else f"  IdentityFile {hosts.client_key}\n  IdentitiesOnly yes\n")
        )
    config.write_text("\n".join(entries))
    print(f"{n} hosts on bridge {lab.bridge} ({lab.address(0, gateway=True)}), slot {lab.slot}:")
    for h in hosts:
        auth = f"password {h.password!r}" if h.password else "key"
        print(f"  {h.hostname:16} {h.address:14} {auth:30} files: {h.root_dir}")
    print("\nlog in:")
    print(f"  ssh -F {config} h{hosts[0].index}")
    print("  " + " ".join(hosts.openssh_args(hosts[0])))
    print(
        f"a shell inside a host without ssh:  nsenter -t {hosts[0].holder[0] if hosts[0].holder else '?'} -m -n -u bash"
    )
    print(
        "SSHDriver: SSHCredentials(user='root', key_files=(" + repr(str(hosts.client_key)) + ",), "
        f"known_hosts={str(hosts.known_hosts)!r}, use_agent=False)"
    )
    print("remove them:  make hosts-down")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("n", type=int)
    p_up.add_argument("--password-host", type=int, default=None)
    sub.add_parser("down")
    args = parser.parse_args()
    try:
        if args.cmd == "up":
            up(args.n, args.password_host)
        else:
            slots = remove_persistent_labs()
            print(
                f"removed the test hosts of slot {', '.join(map(str, slots))}"
                if slots
                else "no test hosts were up"
            )
    except HostSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
