"""kumo's network part: Neutron v2.0 routes, security groups, and the guest network driver."""
