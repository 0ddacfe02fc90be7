"""What a Gatehouse process counts, for Prometheus (served at ``gatehouse.diag_addr``).

One registry per process, defined here so that every layer can count without being
handed an object; a process serves only the series its services touch. Names follow
Prometheus' conventions (base units, ``_total`` added to counters by the client).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

__all__ = [
    "AUDIT_FORWARDED",
    "AUDIT_LOST",
    "AUDIT_PENDING",
    "BACKEND_SECONDS",
    "CERTIFICATES",
    "LOGINS",
    "REGISTRY",
    "SESSIONS",
    "TUNNELS",
    "count_event",
]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU seconds, resident memory, open descriptors
PlatformCollector(registry=REGISTRY)

LOGINS = Counter("gatehouse_logins", "Logins at this auth, by outcome (success, failure)",
                 ["outcome"], registry=REGISTRY)
SESSIONS = Counter("gatehouse_sessions", "SSH sessions on this cluster's nodes as this auth "
                   "stored their events, by outcome (started, denied)", ["outcome"],
                   registry=REGISTRY)
CERTIFICATES = Counter("gatehouse_certificates_issued", "Certificates this auth issued, by "
                       "kind (user, host)", ["kind"], registry=REGISTRY)
BACKEND_SECONDS = Histogram("gatehouse_backend_operation_seconds", "Storage backend "
                            "operations, by operation", ["operation"], registry=REGISTRY,
                            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                     1, 2.5, 5))
TUNNELS = Gauge("gatehouse_tunnels", "Reverse tunnels this proxy holds, by kind (leaf, node)",
                ["kind"], registry=REGISTRY)
AUDIT_FORWARDED = Counter("gatehouse_audit_events_forwarded", "Audit events this process "
                          "sent to its auth and had acknowledged", registry=REGISTRY)
AUDIT_LOST = Counter("gatehouse_audit_events_lost", "Audit events this process could not "
                     "spool (its disk full or failing): each is in its log, whole",
                     registry=REGISTRY)
AUDIT_PENDING = Gauge("gatehouse_audit_events_pending", "Audit events spooled by this process "
                      "and not yet acknowledged by its auth", registry=REGISTRY)

# Audit events that are a login's or a session's outcome (the node audits a refused
# certificate as "auth").
_OUTCOMES = {
    "user.login": (LOGINS, "success"),
    "user.login.failure": (LOGINS, "failure"),
    "session.start": (SESSIONS, "started"),
    "auth": (SESSIONS, "denied"),
}


def count_event(event: str) -> None:
    """Count a stored audit event of this cluster that is a login or session outcome."""
    found = _OUTCOMES.get(event)
    if found is not None:
        counter, outcome = found
        counter.labels(outcome).inc()
