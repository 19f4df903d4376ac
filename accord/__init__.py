"""Accord: federated, differentially private aggregate queries for public authorities.

Everything Accord installs lives in this one namespace: ``accord.node`` (an authority's server),
``accord.coordinator`` (fan-out, combination, the analyst's client), ``accord.protos`` (the wire
contract), ``accord.policies`` (PKI and, later, agreements, consent, budgets and the audit log).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
