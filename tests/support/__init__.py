"""Helpers the tests share, imported one way: `from tests.support.<module> import ...`.

servers.py     free ports, process stop, PostgreSQL databases, an MLflow server
server.py      the model server as a process (start, call, stop), sample rows
records.py     prediction records, a TCP proxy to cut the database, fake stores
prometheus.py  a real Prometheus scraping a server
kube_double.py a double of the Kubernetes API server for the launcher
"""
