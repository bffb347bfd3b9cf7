"""The Grafana dashboards and Prometheus rules of the California Housing system, generated
into the chart (charts/california-housing/dashboards/, rules/) by `python -m monitoring.generate`.
"""
