"""The rules and the record of applying them: identities and the development PKI, signed queries,
the policy gate (agreements, consent, budgets and the audit log join here). No grpc: auditors'
tools use it without a network stack.
"""

__all__: list[str] = []
