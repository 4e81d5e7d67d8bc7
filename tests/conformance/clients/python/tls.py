"""python-etcd3 over TLS (tests/conformance/tls.sh): HOST PORT PKI_DIR.

Puts and reads a key with a CA and a client certificate, then tries without a client
certificate and with a CA that did not sign the server; prints one line per result.
"""
import sys

import etcd3

host, port, pki = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = etcd3.client(host=host, port=port, ca_cert=f"{pki}/ca.pem",
                      cert_key=f"{pki}/client-key.pem", cert_cert=f"{pki}/client.pem",
                      timeout=5)
client.put("tls/py", "v1")
value, meta = client.get("tls/py")
print("get", value.decode(), meta.version)
for label, kwargs in [
    ("no client certificate", dict(ca_cert=f"{pki}/ca.pem")),
    ("other CA", dict(ca_cert=f"{pki}/other-ca.pem", cert_key=f"{pki}/client-key.pem",
                      cert_cert=f"{pki}/client.pem")),
]:
    try:
        etcd3.client(host=host, port=port, timeout=3, **kwargs).get("tls/py")
        print(label, "answered")
    except Exception as e:  # noqa: BLE001 - the class is the result
        print(label, type(e).__name__)
