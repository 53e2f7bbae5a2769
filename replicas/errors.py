"""Why a replica could not serve a request.

ReplicaError
├── ReplicaUnavailable   nothing was generated: safe to retry on another replica
├── ReplicaRejected      the engine refused the request itself (4xx): retrying won't help
└── ReplicaFailed        the stream broke after output had started
"""

from __future__ import annotations


class ReplicaError(Exception):
    def __init__(self, message: str, *, replica_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.replica_id = replica_id


class ReplicaUnavailable(ReplicaError):
    pass


class ReplicaRejected(ReplicaError):
    def __init__(
        self,
        message: str,
        *,
        status: int,
        param: str | None = None,
        code: str | None = None,
        replica_id: str | None = None,
    ) -> None:
        super().__init__(message, replica_id=replica_id)
        self.status = status
        self.param = param
        self.code = code


class ReplicaFailed(ReplicaError):
    pass
