"""An auditor's tools that need the network: fetching a node's audit log over mTLS with an auditor
certificate. Everything offline (verify, check, report) lives in :mod:`accord.policies`."""

__all__: list[str] = []
