// Command etcd is etcd's own server: etcdmain.Main is the whole of upstream's main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
