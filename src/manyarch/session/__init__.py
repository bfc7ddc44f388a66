"""manyarch as a library: one :class:`Session` that every command is a call of
(the calls in :mod:`.core` and :mod:`.local`, the values they take and return in
:mod:`.values`)."""

from manyarch.session.core import Session
from manyarch.session.values import BaseResult, Container, PruneReport, RmiResult, Started

__all__ = ["BaseResult", "Container", "PruneReport", "RmiResult", "Session", "Started"]
