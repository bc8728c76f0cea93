#!/usr/bin/env python3
"""Validate rendered manifests against the Kubernetes OpenAPI schemas, and SealedSecrets against
the CRD's own schema.

usage: validate-manifests.py --crd deploy/crds/sealedsecrets.sealgate.dev.yaml RENDERED.yaml... [--sealed PATH...]

Built-in kinds are checked strictly (unknown fields are errors) with kubernetes-validate's 1.33
schemas. Other projects' CRDs (cert-manager, Flux, Argo CD) are skipped. SealedSecrets, in the
rendered files or under the --sealed paths, are checked against the CRD's openAPIV3Schema.
"""
import argparse
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"
# CRDs of other projects (cert-manager, the Prometheus Operator, Argo CD, Flux), whose schemas
# kubernetes-validate does not ship.
SKIPPED_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/", "argoproj.io/", "source.toolkit.fluxcd.io/", "kustomize.toolkit.fluxcd.io/")


def documents(path):
    with open(path) as f:
        for i, doc in enumerate(yaml.safe_load_all(f), 1):
            if isinstance(doc, dict) and doc.get("kind"):
                yield i, doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crd", required=True)
    ap.add_argument("--sealed", nargs="*", default=[])
    ap.add_argument("rendered", nargs="+")
    args = ap.parse_args()

    crd = next(d for _, d in documents(args.crd))
    version = crd["spec"]["versions"][0]
    crd_api = f'{crd["spec"]["group"]}/{version["name"]}'
    crd_schema = version["schema"]["openAPIV3Schema"]

    failures = checked = 0

    def check_sealed(where, doc):
        nonlocal failures, checked
        checked += 1
        try:
            jsonschema.validate(doc, crd_schema)
        except jsonschema.ValidationError as e:
            failures += 1
            print(f"FAIL {where}: {e.message} at {'/'.join(map(str, e.absolute_path))}")

    for path in args.rendered:
        for i, doc in documents(path):
            where = f'{path} document {i} ({doc["kind"]} {doc.get("metadata", {}).get("name")})'
            api = doc.get("apiVersion", "")
            if api.startswith(SKIPPED_GROUPS):
                print(f"skip {where}: no schema for {api}")
                continue
            if api == crd_api:
                check_sealed(where, doc)
                continue
            checked += 1
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures += 1
                print(f"FAIL {where}: {e.message} at {'/'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failures += 1
                print(f"FAIL {where}: {e}")

    for root in args.sealed:
        for path in sorted(pathlib.Path(root).rglob("*.y*ml")):
            for i, doc in documents(path):
                if doc.get("apiVersion") == crd_api and doc.get("kind") == "SealedSecret":
                    check_sealed(f"{path} document {i}", doc)

    print(f"{checked} objects checked against the Kubernetes {K8S_VERSION} and CRD schemas, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
