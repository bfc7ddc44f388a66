"""The OCI image layout on disk (the embedded store) and its ``oci-archive`` tar form."""

from manyarch.layout.archive import export_tar, import_archive, import_tar
from manyarch.layout.blobs import BlobWriter
from manyarch.layout.dockerarchive import export_docker_archive
from manyarch.layout.layout import Layout
from manyarch.layout.walk import children, walk

__all__ = [
    "BlobWriter",
    "Layout",
    "children",
    "export_docker_archive",
    "export_tar",
    "import_archive",
    "import_tar",
    "walk",
]
