"""Tests of the bundled WaveSpeed mock server."""
