"""The journal's steps belong to one image: a step finished for one manifest digest is not done
for another (an upgrade or a rebuilt image runs every step again), on disk as in memory. Only
e2e runs noticed a journal that ignored the digest (issue 11, item 6)."""

from __future__ import annotations

from pathlib import Path

from builder.runtime.state import Journal

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
HOST = "10.0.0.2"


def test_a_step_done_for_one_image_digest_is_not_done_for_another(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.json")
    journal.record(OLD, "init-master", HOST, "kubeadm-init", seconds=1.0)
    for j in (journal, Journal(journal.path)):  # in memory, and read back from disk
        assert j.done(OLD, "init-master", HOST, "kubeadm-init")
        assert not j.done(NEW, "init-master", HOST, "kubeadm-init")
        assert not j.done(OLD, "init-master", "10.0.0.3", "kubeadm-init")
        assert not j.done(OLD, "join-masters", HOST, "kubeadm-init")
        assert j.phases_done(HOST, OLD) == ["init-master"]
        assert j.phases_done(HOST, NEW) == []
        assert j.phases_done(HOST) == ["init-master"]


def test_steps_of_two_images_are_kept_apart(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.json")
    journal.record(OLD, "deliver", HOST, "rootfs", seconds=0.5)
    journal.record(NEW, "upgrade", HOST, "kubeadm-upgrade", seconds=0.5)
    again = Journal(journal.path)
    assert again.phases_done(HOST, OLD) == ["deliver"]
    assert again.phases_done(HOST, NEW) == ["upgrade"]
    assert not again.done(NEW, "deliver", HOST, "rootfs")
    assert again.last_phase(HOST) == "upgrade"
    again.forget_phase("deliver", [HOST])
    assert not Journal(journal.path).done(OLD, "deliver", HOST, "rootfs")
    assert Journal(journal.path).done(NEW, "upgrade", HOST, "kubeadm-upgrade")
