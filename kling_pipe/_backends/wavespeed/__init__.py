"""The WaveSpeed REST client, in its parts.

The URL policy, the parsing of the API's answers, the retry policy and the HTTP client that
uses them.
"""
