"""What the agent keeps: the in-memory fleet, the state database, secret files."""
