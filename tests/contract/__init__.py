"""Contract suites: one per state protocol, run against every backend."""
