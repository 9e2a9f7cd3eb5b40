"""The support console (/support/): staff only, every action audited."""
