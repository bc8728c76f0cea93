#!/usr/bin/env python3
"""Known-answer vectors for sealgate's kubeseal format, made by an independent implementation.

This re-implements Bitnami Sealed Secrets' HybridEncrypt (pkg/crypto/crypto.go) and key Secret
(pkg/controller/keys.go) with Python's `cryptography` (OpenSSL), and writes:

  key-secret.yaml     a Bitnami key Secret: kubernetes.io/tls, tls.key as PKCS#1, labelled active
  sealed-*.yaml       bitnami.com/v1alpha1 SealedSecrets, one per scope
  expected.json       the plaintext of every item, base64

Run once (pip install cryptography) and commit the output; core/tests/compat.rs checks that
sealgate opens every value. The key is a TEST KEY, used nowhere else.
"""
import base64, datetime, json, os, struct
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa, padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
b64 = lambda b: base64.b64encode(b).decode()

key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now)
    .not_valid_after(now + datetime.timedelta(days=3650 * 3))  # outlives the test suite
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    # Upstream sets only EncipherOnly, which `cryptography` refuses without keyAgreement; usage is not checked.
    .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), critical=True)
    .sign(key, hashes.SHA256())
)
tls_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())  # "RSA PRIVATE KEY" (PKCS#1), as Go's x509.MarshalPKCS1PrivateKey
tls_crt = cert.public_bytes(serialization.Encoding.PEM)
assert tls_key.startswith(b"-----BEGIN RSA PRIVATE KEY-----")

with open(os.path.join(HERE, "key-secret.yaml"), "w") as f:
    f.write(f"""# A Bitnami Sealed Secrets key Secret (TEST KEY), as `kubectl get secret -o yaml` prints it.
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  type: kubernetes.io/tls
  metadata:
    name: sealed-secrets-keyx7q2p
    namespace: kube-system
    labels:
      sealedsecrets.bitnami.com/sealed-secrets-key: active
  data:
    tls.crt: {b64(tls_crt)}
    tls.key: {b64(tls_key)}
""")
# Also as plain PEM files, for `openssl pkeyutl` and `keys import` of PEM.
with open(os.path.join(HERE, "tls.key"), "wb") as f:
    f.write(tls_key)
with open(os.path.join(HERE, "tls.crt"), "wb") as f:
    f.write(tls_crt)


def hybrid_encrypt(pub, plaintext: bytes, label: bytes) -> bytes:
    session_key = os.urandom(32)
    rsa_ct = pub.encrypt(session_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                   algorithm=hashes.SHA256(), label=label or None))
    gcm = AESGCM(session_key).encrypt(b"\0" * 12, plaintext, None)
    return struct.pack(">H", len(rsa_ct)) + rsa_ct + gcm


items = {
    "password": b"hunter2",
    "empty": b"",
    "binary": bytes(range(256)),
    "unicode": "päss🔑".encode(),
    "config.json": b'{"user":"admin","token":"t0k3n"}\n',
}
scopes = {
    "strict": ({}, lambda ns, n: f"{ns}/{n}".encode()),
    "namespace-wide": ({"sealedsecrets.bitnami.com/namespace-wide": "true"}, lambda ns, n: ns.encode()),
    "cluster-wide": ({"sealedsecrets.bitnami.com/cluster-wide": "true"}, lambda ns, n: b""),
}
expected = {}
for scope, (annotations, label) in scopes.items():
    ns, nm = "prod", f"db-{scope}"
    enc = {k: b64(hybrid_encrypt(key.public_key(), v, label(ns, nm))) for k, v in items.items()}
    # Self-check with the same library's decryption.
    for k, v in enc.items():
        raw = base64.b64decode(v)
        n = struct.unpack(">H", raw[:2])[0]
        sk = key.decrypt(raw[2:2 + n], padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                    label=label(ns, nm) or None))
        assert AESGCM(sk).decrypt(b"\0" * 12, raw[2 + n:], None) == items[k]
    ann = "".join(f"\n    {k}: \"{v}\"" for k, v in annotations.items())
    data = "".join(f"\n    {k}: {v}" for k, v in enc.items())
    with open(os.path.join(HERE, f"sealed-{scope}.yaml"), "w") as f:
        f.write(f"""apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: {nm}
  namespace: {ns}
  annotations:{ann or " {}"}
spec:
  encryptedData:{data}
  template:
    metadata:
      name: {nm}
      namespace: {ns}
      labels:
        app: db
    type: Opaque
""")
    expected[scope] = {"namespace": ns, "name": nm, "items": {k: b64(v) for k, v in items.items()}}
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(expected, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote vectors to", HERE)
