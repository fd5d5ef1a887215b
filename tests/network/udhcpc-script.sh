#!/bin/sh
# udhcpc's event script for tests: print what the lease carries, change nothing.
[ "$1" = "bound" ] || exit 0
echo "ip=$ip"
echo "mtu=$mtu"
echo "staticroutes=$staticroutes"
echo "router=$router"
echo "dns=$dns"
echo "hostname=$hostname"
