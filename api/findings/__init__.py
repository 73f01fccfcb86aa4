"""Findings: pure functions from rollup query results to `Finding` objects, one module per
kind (idle, fleet, speculative, quantisation, workload), the cost model (catalogue, unit
cost), and the runner that feeds them from the store (`engine.run_findings`)."""
