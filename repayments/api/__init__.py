"""REST API v1 for the borrower app and partners (DRF + drf-spectacular).

Thin views over the same services the portal pages use; see docs/api.md.
"""
