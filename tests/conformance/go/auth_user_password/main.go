// auth_user_password: clientv3 with Username/Password against the endpoint given as the
// first argument. Sets up user root (role root), role "goapp" with READWRITE on the prefix
// "goauth/", user "gouser" with that role, enables auth, then: a wrong password, puts and
// gets inside and outside the prefix, an anonymous put, a user listing as gouser and as
// root, a watch outside the prefix; finally disables auth and removes what it added.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func report(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
	} else {
		fmt.Printf("%s: ok\n", what)
	}
}

func client(ep, user, pw string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Username: user, Password: pw})
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	anon, err := client(ep, "", "")
	if err != nil {
		fmt.Printf("dial: error: %v\n", err)
		os.Exit(1)
	}
	defer anon.Close()

	_, err = anon.UserAdd(ctx, "root", "rootpw")
	report("user add root", err)
	_, err = anon.UserGrantRole(ctx, "root", "root")
	report("grant root", err)
	_, err = anon.RoleAdd(ctx, "goapp")
	report("role add", err)
	_, err = anon.RoleGrantPermission(ctx, "goapp", "goauth/", clientv3.GetPrefixRangeEnd("goauth/"), clientv3.PermissionType(clientv3.PermReadWrite))
	report("grant prefix", err)
	_, err = anon.UserAdd(ctx, "gouser", "gopw")
	report("user add", err)
	_, err = anon.UserGrantRole(ctx, "gouser", "goapp")
	report("grant role", err)
	_, err = anon.AuthEnable(ctx)
	report("auth enable", err)

	if bad, err := client(ep, "gouser", "wrong"); err != nil {
		report("wrong password", err)
	} else {
		_, err = bad.Get(ctx, "goauth/k")
		report("wrong password", err)
		bad.Close()
	}

	u, err := client(ep, "gouser", "gopw")
	report("login", err)
	if err == nil {
		p, err := u.Put(ctx, "goauth/k", "v")
		report("put inside", err)
		if err == nil {
			fmt.Printf("  put rev=%d\n", p.Header.Revision)
		}
		g, err := u.Get(ctx, "goauth/", clientv3.WithPrefix())
		report("get inside", err)
		if err == nil {
			for _, kv := range g.Kvs {
				fmt.Printf("  %s=%s mod=%d\n", kv.Key, kv.Value, kv.ModRevision)
			}
		}
		_, err = u.Put(ctx, "outside", "v")
		report("put outside", err)
		_, err = u.Get(ctx, "goauth0")
		report("get outside", err)
		_, err = u.UserList(ctx)
		report("user list as gouser", err)
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		for wr := range u.Watch(wctx, "outside") {
			fmt.Printf("watch outside: canceled=%v err=%v\n", wr.Canceled, wr.Err())
			break
		}
		wcancel()
		u.Close()
	}
	_, err = anon.Put(ctx, "goauth/anon", "v")
	report("anonymous put", err)

	root, err := client(ep, "root", "rootpw")
	report("root login", err)
	if err == nil {
		l, err := root.UserList(ctx)
		report("user list as root", err)
		if err == nil {
			fmt.Printf("  users=%v\n", l.Users)
		}
		_, err = root.UserDelete(ctx, "root")
		report("delete root while enabled", err)
		_, err = root.AuthDisable(ctx)
		report("auth disable", err)
		root.Close()
	}
	_, err = anon.Delete(ctx, "goauth/", clientv3.WithPrefix())
	report("cleanup keys", err)
	_, err = anon.UserDelete(ctx, "gouser")
	report("cleanup gouser", err)
	_, err = anon.UserDelete(ctx, "root")
	report("cleanup root", err)
	_, err = anon.RoleDelete(ctx, "goapp")
	report("cleanup role", err)
}
