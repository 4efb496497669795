"""fleetplan: plan LLM inference fleets that meet p99 latency targets at the lowest cost.

The import package is ``solver``; the distribution and command are ``fleetplan``.
Data flows one way: catalogs + problem -> cost model -> candidates -> CP-SAT -> verifier -> reports.
"""

__version__ = "0.1.0"
