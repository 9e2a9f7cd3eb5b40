"""Delivery providers: one small interface, development and real implementations."""
