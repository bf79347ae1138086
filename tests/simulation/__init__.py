"""The seeded simulation of the submit protocol."""
