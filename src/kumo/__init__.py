"""kumo: a compact self-hosted IaaS that speaks OpenStack's APIs."""

__version__ = "0.1.0"
