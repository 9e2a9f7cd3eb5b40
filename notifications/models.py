"""Notification outbox models arrive with the notifications issue; the app
exists now so that the dependency direction repayments -> notifications is
fixed from the first migration."""
