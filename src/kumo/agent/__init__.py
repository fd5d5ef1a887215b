"""Scale-out: compute agents on several hosts, the jobs that reach them, their registry.

- `models`: one row per compute host (nova's services + compute_nodes), heartbeats.
- `registry`: register a host, beat, tell up from down (nova's `service_down_time`).
- `jobs`: work for a host as procrastinate jobs on PostgreSQL (queue `host:<name>`,
  one lock per server); `JobDispatch` is what API processes use instead of a hypervisor.
- `process`: `kumo agent`, the process that runs one host's guests.
"""
