"""A single-node Kubernetes cluster built on this machine, for the chart's tests.

Every component is compiled here from its published Go module (``cluster/go/*``, pinned in
go.sum) and cached outside the checkout; the node runs real Pods with Debian's containerd,
runc and CNI plugins; images are built locally and imported, since none can be pulled.
``python -m cluster up | down | status`` (``scripts/cluster.sh``); see docs/kubernetes.md.
"""
