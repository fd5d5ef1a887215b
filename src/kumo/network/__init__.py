"""kumo's network part: Neutron v2.0 (networks, subnets, ports, routers, floating IPs,
security groups) and the driver that builds it on the host.

The API: `routes.py` (the five calls of each resource), `l3_routes.py` (router
interfaces, auto-allocated topology), `secgroup_routes.py`; the rules in one module per
resource (`networks`, `subnets`, `ports`, `routers`, `floatingips`, `secgroups`,
`autoalloc`) over `ipam` (addresses, pools, MACs) and `hostroutes`; Neutron's shapes
in `views`, list queries in `query`, Neutron's error types in `errors`.

What compute uses (`nics.py`):
- `allocate_for_server(session, context, server_id, hostname, requested, ...)` at
  POST /servers: makes or takes the server's ports (`networks` list, `auto`, `none`);
- `bind_server_ports(runtime, server_id, host) -> tuple[Nic, ...]` before each spawn
  and power-on: the server's ports in NIC order, bound to `host` (binding:host_id, what
  the driver builds taps for). A `Nic` has `port_id`, `network_id`, `network_name`,
  `mac`, `mtu`, `tap` (tap name) and `fixed_ips` (each: `ip_address`, `cidr`,
  `netmask`, `gateway_ip`, `dns_nameservers`, `host_routes`, `dhcp_server`);
- `release_server_ports(session, server_id)` at delete; `nics_of(session, ids)` for
  `addresses` and the metadata service.

Every committed change the plumbing must follow calls `network_of(runtime).changed()`
(through `nics.notify`); the agent then re-reads the whole topology (`topology.py`).
"""
