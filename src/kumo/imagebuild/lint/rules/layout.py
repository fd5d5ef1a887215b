"""Root filesystem layout: one ext3/ext4 partition that growpart can grow (no LVM)."""

from __future__ import annotations

from kumo.imagebuild.lint.base import Finding, Rule, Severity
from kumo.imagebuild.lint.view import ImageView


class RootFilesystem(Rule):
    id = "root-filesystem"
    severity = Severity.error
    title = "one ext3/ext4 root partition, not on LVM"
    fix = ("build the image with a single ext4 partition holding / (for example "
           "`kumo image build debian`), last on the disk so growpart can grow it")
    needs_root = False

    def check(self, view: ImageView) -> list[Finding]:
        found: list[Finding] = []
        summary = ", ".join(
            f"{p.number or 'disk'}:{p.filesystem}" for p in view.partitions
        ) or "none"
        lvm = [p for p in view.partitions if p.filesystem == "lvm" or p.kind == "lvm"]
        if lvm:
            found.append(self.finding(
                f"LVM physical volume on partition {lvm[0].number}: cloud-init's growpart "
                "cannot grow a root on LVM; the image needs its own resize script "
                "(pvresize, lvextend, resize2fs)",
                severity=Severity.warning,
            ))
        if view.root is None or view.root_partition is None:
            found.append(self.finding(
                f"no ext2/3/4 root filesystem found (partitions: {summary}); "
                "the other checks could not run"
            ))
            return found
        root = view.root_partition
        where = f"partition {root.number}" if root.number else "the whole disk"
        if view.root.kind == "ext2":
            found.append(self.finding(
                f"the root filesystem on {where} is ext2 (no journal): an instance that "
                "stops hard needs a long fsck", severity=Severity.warning,
                fix="tune2fs -j on the image's root partition turns it into ext3",
            ))
        if root.number == 0:
            found.append(self.finding(
                "the filesystem fills the whole disk (no partition table): it boots only "
                "with a separate kernel (kernel_id/ramdisk_id) and cannot be grown by growpart",
                severity=Severity.warning,
            ))
            return found
        after = [p for p in view.partitions if p.start > root.start]
        if after:
            found.append(self.finding(
                f"partition {after[0].number} ({after[0].filesystem}) comes after the root "
                f"partition {root.number}: growpart can only grow the last partition into "
                "a bigger disk", severity=Severity.warning,
            ))
        others = [p for p in view.partitions
                  if p is not root and p.kind not in ("bios-boot", "efi")
                  and p.filesystem != "lvm" and p not in after]
        if others:
            found.append(self.finding(
                f"{len(view.partitions)} partitions ({summary}): OpenStack's guide asks for "
                "one root partition", severity=Severity.info,
            ))
        return found
