"""Alerts: rules evaluated on findings and on live rollups, firing and resolved
transitions, and webhook delivery."""
