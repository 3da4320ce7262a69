"""The outbox's SQL that is the same on sqlite and PostgreSQL: the rows the store reads by
position (a delivery, an endpoint, an endpoint's sending configuration) and the ordering-key
rule. Each backend's query table builds on these, so the shapes cannot drift apart.
"""

__all__ = ["HEAD", "DELIVERY", "ENDPOINT", "CONFIG"]

#: Not behind an unsettled delivery to the same endpoint with the same ordering key.
HEAD = (
    "(d.key IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM webhooklite_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.key = d.key "
    "AND p.state = 'pending' AND p.id < d.id))"
)
#: A delivery row, as ``outbox_store`` reads it.
DELIVERY = (
    "SELECT d.id, d.message_id, d.endpoint_id, e.url, m.event, d.state, d.attempts, d.tries, d.next_at, "
    "d.last_status, d.last_error, d.created, d.updated, m.body, m.tenant, d.key "
    "FROM webhooklite_deliveries d JOIN webhooklite_messages m ON m.id = d.message_id "
    "LEFT JOIN webhooklite_endpoints e ON e.id = d.endpoint_id"
)
#: An endpoint row, as ``Endpoint`` reads it.
ENDPOINT = (
    "SELECT id, url, events, scheme, headers, timeout, enabled, disabled_reason, created, tenant, last_success, "
    "failing_since FROM webhooklite_endpoints"
)
#: What a worker needs to send to an endpoint.
CONFIG = "SELECT id, tenant, url, secret, scheme, events, headers, timeout, enabled FROM webhooklite_endpoints"
