"""Checkpoint archive files (PATH.tar[.zst|.gz]): Podman's export, CRI-O's, containerd's and the
kubelet's archives are read by converting them into ckpt's format; ckpt writes the shape
`podman container restore --import` and checkpointctl read."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from ...format.write import OnBlob
from ...oci.layout import Layout
from ...oci.model import Descriptor
from ...progress import OnProgress
from ...reference import ArchiveRef
from ..home import Home
from .layout import LayoutSource


@contextmanager
def open_archive(ref: ArchiveRef, home: Home, on_progress: OnProgress) -> Iterator[LayoutSource]:
    """The archive converted into a scratch layout that lives as long as the context."""
    from ...compat.read import archive_to_ckpt

    with home.workdir("import-") as work:
        layout = Layout(work / "layout", create=True)
        desc, origin = archive_to_ckpt(ref.path, layout, work / "archive", on_progress=on_progress)
        yield LayoutSource(layout, desc, origin, durable=False)


class ArchiveSink:
    local = False

    def __init__(self, ref: ArchiveRef, on_progress: OnProgress) -> None:
        self.ref, self._on_progress = ref, on_progress

    def preflight(self) -> None:
        pass

    def early_upload(self, layout: Layout) -> nullcontext[OnBlob | None]:
        return nullcontext(None)

    def publish(self, layout: Layout, desc: Descriptor) -> Descriptor:
        from ...compat.write_archive import export_archive

        export_archive(layout, desc, self.ref.path, on_progress=self._on_progress)
        return desc
