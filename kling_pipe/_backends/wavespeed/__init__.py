"""The WaveSpeed REST client, in its parts.

The URL policy, the key scrubber every server text passes through, the parsing of the API's
answers, the retry policy and the HTTP client that uses them.
"""
