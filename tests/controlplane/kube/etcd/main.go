// Command etcd is the real etcd server, built from its module at the version
// the pinned Kubernetes release was tested with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
