// services_watcher is the other half of the etcd service-registration tutorial: it
// watches the /services/ prefix on 127.0.0.1:2379 and prints one line per event,
// "PUT <key>" or "DELETE <key>". Once the watch is established it prints
// "watching /services/", so a caller knows that no later event can be missed.
// Every line is written straight to stdout (os.Stdout is unbuffered), so a caller
// reading the output file sees each event as soon as it arrives.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"127.0.0.1:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer client.Close()
	ch := client.Watch(context.Background(), "/services/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	for resp := range ch {
		if err := resp.Err(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if resp.Created {
			fmt.Println("watching /services/")
		}
		for _, ev := range resp.Events {
			fmt.Printf("%s %s\n", ev.Type, ev.Kv.Key)
		}
	}
	fmt.Println("watch closed")
	os.Exit(1)
}
