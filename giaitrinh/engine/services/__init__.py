"""Use cases: one function each, each one database transaction with its audit event.

The web layer and the command line call these and nothing deeper.
"""
