"""BuildKit's image exporter: a build's result in the form its outputs ask.

ExportOptions / export    media types, compression, annotations, inline cache, attestations
Annotations               buildx's --annotation, and where each goes
"""

from manyarch.export.annotations import Annotation, Annotations, parse_annotations
from manyarch.export.image import Exported, ExportOptions, export, parse_compression

__all__ = [
    "Annotation",
    "Annotations",
    "ExportOptions",
    "Exported",
    "export",
    "parse_annotations",
    "parse_compression",
]
