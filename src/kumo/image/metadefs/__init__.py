"""Glance's metadata definitions (metadefs): namespaces of property, object and tag
definitions that tell clients (the dashboard, `glance md-*`) which image, flavor and
server properties mean what, with kumo's default catalog."""
