"""Identity: password hashing and policy, access tokens, refresh sessions."""
