"""A run.

Set-up, the scheduler shell, and the units a shot walks through (inputs, the submit
protocol, watching, delivery), with progress and the run's results.
"""
