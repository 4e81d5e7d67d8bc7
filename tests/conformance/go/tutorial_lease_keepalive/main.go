package main
import (
"context"
"fmt"
"go.etcd.io/etcd/clientv3"
"time"
)
func main() {
config := clientv3.Config{
Endpoints: []string{"localhost:2379"},
DialTimeout: 5 * time.Second,
}
client, err := clientv3.New(config)
if err != nil {
fmt.Println(err)
return
}
defer client.Close()
lease := clientv3.NewLease(client)
leaseResp, err := lease.Grant(context.Background(), 10)
if err != nil {
fmt.Println(err)
return
}
leaseRespChan, _ := lease.KeepAlive(context.Background(), leaseResp.ID)
kv := clientv3.NewKV(client)
key := fmt.Sprintf("/services/http/%d", leaseResp.ID)
value := `{"host": "localhost", "port": 2379}`
fmt.Println("key", key)
_, err = kv.Put(context.Background(), key, value, clientv3.WithLease(leaseResp.ID))
if err != nil {
fmt.Println(err)
return
}
fmt.Println("register service success")
for {
select {
case i := <-leaseRespChan:
fmt.Println("heart beat", i.String())
}
}
}

