"""End-to-end tests: the real client and command against the bundled mock."""
