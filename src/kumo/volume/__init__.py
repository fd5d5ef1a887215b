"""Block Storage (Cinder v3 subset): volumes, snapshots, attachments, quotas.

`models` are the tables, `service` the rules (statuses, quotas, what may happen
when), `driver` the small interface a storage backend implements (`qcow2` files by
default), `routes` the HTTP API under /volume, `worker` the background jobs.
"""
