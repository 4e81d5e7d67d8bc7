// Go clientv3 over TLS (tests/conformance/tls.sh): ENDPOINT PKI_DIR.
// Puts and reads a key with a CA and a client certificate (transport.TLSInfo, as etcd's
// docs show), watches it, then tries without a client certificate; one line per result.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/transport"
)

func client(endpoint string, info transport.TLSInfo) (*clientv3.Client, error) {
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 2 * time.Second,
		TLS:         tlsConfig,
	})
}

func main() {
	endpoint, pki := os.Args[1], os.Args[2]
	full := transport.TLSInfo{
		CertFile:      pki + "/client.pem",
		KeyFile:       pki + "/client-key.pem",
		TrustedCAFile: pki + "/ca.pem",
	}
	cli, err := client(endpoint, full)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wch := cli.Watch(ctx, "tls/go")
	if _, err := cli.Put(ctx, "tls/go", "v1"); err != nil {
		fmt.Println("put:", err)
		return
	}
	resp, err := cli.Get(ctx, "tls/go")
	if err != nil {
		fmt.Println("get:", err)
		return
	}
	fmt.Println("get", string(resp.Kvs[0].Value), resp.Kvs[0].Version)
	ev := <-wch
	fmt.Println("watch", ev.Events[0].Type, string(ev.Events[0].Kv.Key))

	noCert, err := client(endpoint, transport.TLSInfo{TrustedCAFile: pki + "/ca.pem"})
	if err != nil {
		fmt.Println("no client certificate: connect:", err)
		return
	}
	defer noCert.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := noCert.Get(short, "tls/go"); err != nil {
		fmt.Println("no client certificate:", err)
	} else {
		fmt.Println("no client certificate: answered")
	}
}
