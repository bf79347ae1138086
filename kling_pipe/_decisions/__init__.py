"""The decisions.

What to render, in which order, when to poll, what a lost submit's candidate task is. Pure
state machines and comparisons; the shells in `_running` act on them.
"""
