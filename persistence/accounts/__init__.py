"""Accounts: users, sessions and refresh tokens, lockout counters, password reset tokens."""
