//go:build tools

// The command this module builds: go build go.etcd.io/etcd/server/v3 (package main).
package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
