"""The shot-list language.

The TOML's classes, how it is read, every rule it must keep, and the fingerprint of a shot's
inputs. Pure: no network, no records.
"""
